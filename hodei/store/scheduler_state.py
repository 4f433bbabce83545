"""The schedulers' shared state in SQL: who leads (``scheduler_leader``, for status and
doctor) and when beat last sent each task (``beat_runs``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from hodei.store.engine import database_errors
from hodei.store.tables import beat_runs, scheduler_leader

LEAD = "scheduler"


@dataclass(frozen=True)
class Leader:
    holder: str
    acquired_at: datetime
    renewed_at: datetime


def _upsert(engine: Engine, table: sa.Table, key: str, values: dict[str, object]) -> None:
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[key], set_={k: v for k, v in values.items() if k != key}
    )
    with database_errors(), engine.begin() as connection:
        connection.execute(statement)


def write_leader(engine: Engine, holder: str, acquired_at: datetime, now: datetime) -> None:
    values = {"name": LEAD, "holder": holder, "acquired_at": acquired_at, "renewed_at": now}
    _upsert(engine, scheduler_leader, "name", values)


def read_leader(connection: sa.Connection) -> Leader | None:
    row = connection.execute(
        sa.select(scheduler_leader).where(scheduler_leader.c.name == LEAD)
    ).first()
    return Leader(row.holder, row.acquired_at, row.renewed_at) if row else None


def record_beat_run(engine: Engine, task: str, at: datetime) -> None:
    _upsert(engine, beat_runs, "task", {"task": task, "last_sent_at": at})


def last_beat_runs(engine: Engine) -> dict[str, datetime]:
    with database_errors(), engine.connect() as connection:
        rows = connection.execute(sa.select(beat_runs.c.task, beat_runs.c.last_sent_at))
        return {task: at for task, at in rows}
