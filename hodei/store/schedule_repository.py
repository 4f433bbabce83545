"""Cron schedules and their fires, in SQL (``schedules``, ``schedule_fires``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.schedules import Catchup, Schedule
from hodei.errors import Conflict
from hodei.services.ports.store import Fire
from hodei.store.tables import schedule_fires, schedules

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

_COLUMNS = (
    "name", "cron", "timezone", "spec", "paused", "next_fire_at", "last_fire_at",
    "last_job_id", "created_by", "created_at", "updated_at",
)  # fmt: skip


def _from_row(row: Mapping[Any, Any]) -> Schedule:
    return Schedule(
        id=row["id"],
        catchup=Catchup(row["catchup"]),
        **{name: row[name] for name in _COLUMNS},
    )


def _to_row(schedule: Schedule) -> dict[str, Any]:
    row = {name: getattr(schedule, name) for name in _COLUMNS}
    row.update(id=schedule.id, catchup=str(schedule.catchup), spec=dict(schedule.spec))
    return row


_ACTIVE = sa.and_(schedules.c.paused.is_(False), schedules.c.next_fire_at.is_not(None))


class SqlScheduleRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, schedule: Schedule) -> None:
        try:
            with self._c.begin_nested():  # a savepoint: the caller's transaction goes on
                self._c.execute(schedules.insert().values(**_to_row(schedule)))
        except sa.exc.IntegrityError as exc:  # the name's unique key: a concurrent add
            raise Conflict(f"a schedule named {schedule.name!r} exists already") from exc

    def get_by_name(self, name: str) -> Schedule | None:
        row = self._c.execute(sa.select(schedules).where(schedules.c.name == name)).mappings()
        found = row.first()
        return _from_row(found) if found else None

    def search(self) -> list[Schedule]:
        rows = self._c.execute(sa.select(schedules).order_by(schedules.c.name)).mappings()
        return [_from_row(r) for r in rows]

    def due(self, now: datetime, *, limit: int) -> list[Schedule]:
        stmt = (
            sa.select(schedules)
            .where(_ACTIVE, schedules.c.next_fire_at <= now)
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
        )
        return [_from_row(r) for r in self._c.execute(stmt).mappings()]

    def next_due_at(self) -> datetime | None:
        found: datetime | None = self._c.execute(
            sa.select(sa.func.min(schedules.c.next_fire_at)).where(_ACTIVE)
        ).scalar_one_or_none()
        if found is not None and found.tzinfo is None:  # min() loses the column type on SQLite
            found = schedules.c.next_fire_at.type.process_result_value(found, self._c.dialect)  # type: ignore[attr-defined]
        return found

    def update(self, schedule_id: UUID, **changes: Any) -> None:
        self._c.execute(schedules.update().where(schedules.c.id == schedule_id).values(**changes))

    def set_if_paused(self, schedule_id: UUID, was_paused: bool, **changes: Any) -> bool:
        """Set ``changes`` if the schedule is there and its ``paused`` is ``was_paused``."""
        result = self._c.execute(
            schedules.update()
            .where(schedules.c.id == schedule_id, schedules.c.paused == was_paused)
            .values(**changes)
        )
        return result.rowcount == 1

    def advance(self, schedule_id: UUID, expected_next: datetime, **changes: Any) -> bool:
        result = self._c.execute(
            schedules.update()
            .where(schedules.c.id == schedule_id, schedules.c.next_fire_at == expected_next)
            .values(**changes)
        )
        return result.rowcount == 1

    def delete(self, schedule_id: UUID) -> None:
        self._c.execute(schedule_fires.delete().where(schedule_fires.c.schedule_id == schedule_id))
        self._c.execute(schedules.delete().where(schedules.c.id == schedule_id))

    def record_fire(self, fire: Fire) -> bool:
        values = {
            "schedule_id": fire.schedule_id,
            "fire_time": fire.fire_time,
            "job_id": fire.job_id,
            "trigger": fire.trigger,
            "fired_at": fire.fired_at,
        }
        # The dialect's own insert (for ON CONFLICT), imported here: a SQLite command
        # need not import SQLAlchemy's PostgreSQL dialect (30 ms) for it.
        statement: postgresql.Insert | sqlite.Insert
        if self._c.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(schedule_fires)
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(schedule_fires)
        statement = statement.values(**values).on_conflict_do_nothing()
        # The primary key decides: a second fire of the same tick inserts nothing. (A
        # returned row, not rowcount, which psycopg reports as -1 for this statement.)
        inserted = self._c.execute(statement.returning(schedule_fires.c.schedule_id)).first()
        return inserted is not None

    def fires(self, schedule_id: UUID, *, limit: int) -> list[Fire]:
        rows = self._c.execute(
            sa.select(schedule_fires)
            .where(schedule_fires.c.schedule_id == schedule_id)
            .order_by(schedule_fires.c.fire_time.desc())
            .limit(limit)
        ).mappings()
        return [
            Fire(r["schedule_id"], r["fire_time"], r["job_id"], r["trigger"], r["fired_at"])
            for r in rows
        ]
