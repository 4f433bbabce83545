"""The event log and job output lines, in SQL."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.domain.records import LogLine
from hodei.services.ports.store import EventQuery
from hodei.store.driver_statement import insert_rows
from hodei.store.mapping import event_from_row, event_to_row, log_from_row, log_to_row
from hodei.store.tables import domain_events as events
from hodei.store.tables import job_logs


class SqlEventRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, *new_events: DomainEvent) -> None:
        # On PostgreSQL a statement trigger sends NOTIFY hodei_events in this transaction.
        insert_rows(self._c, events, [event_to_row(e) for e in new_events])

    def search(self, query: EventQuery) -> list[DomainEvent]:
        stmt = sa.select(events)
        if query.event_types:
            stmt = stmt.where(events.c.event_type.in_(list(query.event_types)))
        if query.aggregate_ids:
            stmt = stmt.where(events.c.aggregate_id.in_(list(query.aggregate_ids)))
        if query.correlation_id:
            stmt = stmt.where(events.c.correlation_id == query.correlation_id)
        if query.since:
            stmt = stmt.where(events.c.occurred_at >= query.since)
        if query.after_id is not None:
            stmt = stmt.where(events.c.id > query.after_id)
        order = events.c.id.desc() if query.newest_first else events.c.id
        rows = self._c.execute(stmt.order_by(order).limit(query.limit)).mappings()
        return [event_from_row(r) for r in rows]

    def newest_types(self, aggregate_ids: Collection[UUID]) -> dict[UUID, str]:
        if not aggregate_ids:
            return {}
        # Each aggregate's newest id by ix_domain_events_aggregate_id_id, then those rows.
        newest = (
            sa.select(sa.func.max(events.c.id))
            .where(events.c.aggregate_id.in_(list(aggregate_ids)))
            .group_by(events.c.aggregate_id)
        )
        query = sa.select(events.c.aggregate_id, events.c.event_type).where(
            events.c.id.in_(newest.scalar_subquery())
        )
        return {row.aggregate_id: row.event_type for row in self._c.execute(query)}

    def purge(self, before: datetime, aggregate_ids: Collection[UUID]) -> int:
        stmt = events.delete().where(events.c.occurred_at < before)
        if aggregate_ids:
            stmt = stmt.where(events.c.aggregate_id.in_(list(aggregate_ids)))
        return int(self._c.execute(stmt).rowcount)


# The channel's payload is the job id, so a follower wakes only for its own job's lines.
LOGS_CHANNEL = "hodei_logs"
_NOTIFY_LOGS = sa.text(f"SELECT pg_notify('{LOGS_CHANNEL}', :job_id)")


class SqlLogRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def append(self, lines: Sequence[LogLine]) -> None:
        # Several rows go in with one COPY on PostgreSQL (insert_rows); ``data`` is bytea
        # there and a BLOB on SQLite, NULL for most lines (see mapping.log_to_row).
        insert_rows(self._c, job_logs, [log_to_row(ln) for ln in lines])
        if self._c.dialect.name == "postgresql":
            # Wakes `logs --follow` and `job run` at this commit (hodei/store/job_watch.py);
            # PostgreSQL folds equal notifications of one transaction into one.
            for job_id in sorted({str(ln.job_id) for ln in lines}):
                self._c.execute(_NOTIFY_LOGS, {"job_id": job_id})

    def read(
        self, job_id: UUID, *, after_id: int = 0, limit: int = 1000, tail: int | None = None
    ) -> list[LogLine]:
        stmt = sa.select(job_logs).where(job_logs.c.job_id == job_id, job_logs.c.id > after_id)
        if tail is not None:
            rows = self._c.execute(stmt.order_by(job_logs.c.id.desc()).limit(tail)).mappings()
            return [log_from_row(r) for r in reversed(list(rows))]
        rows = self._c.execute(stmt.order_by(job_logs.c.id).limit(limit)).mappings()
        return [log_from_row(r) for r in rows]

    def tail_start(self, job_id: UUID, lines: int) -> int:
        stmt = (
            sa.select(job_logs.c.id)
            .where(job_logs.c.job_id == job_id)
            .order_by(job_logs.c.id.desc())
            .offset(lines)
            .limit(1)
        )
        return int(self._c.execute(stmt).scalar() or 0)

    def count(self, job_id: UUID, attempt_no: int) -> int:
        stmt = sa.select(sa.func.count()).where(
            job_logs.c.job_id == job_id, job_logs.c.attempt_no == attempt_no
        )
        return int(self._c.execute(stmt).scalar_one())
