"""What deciding a held job's gates reads, in SQL (services/jobs/gates.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.records import Job
from hodei.domain.states import TERMINAL_STATES, JobState
from hodei.store.driver_statement import insert_rows
from hodei.store.mapping import job_from_row
from hodei.store.tables import job_dependencies, jobs

_PENDING = str(JobState.PENDING)
_ENDED = [str(s) for s in TERMINAL_STATES]
_CHUNK = 500

_dep_job = sa.alias(jobs, "dep_job")
# A job with a dependency that has not ended yet.
OPEN_DEPENDENCY = (
    sa.select(sa.literal(1))
    .select_from(job_dependencies.join(_dep_job, _dep_job.c.id == job_dependencies.c.depends_on))
    .where(job_dependencies.c.job_id == jobs.c.id, _dep_job.c.state.not_in(_ENDED))
    .exists()
)
_HELD = sa.and_(jobs.c.state == _PENDING, jobs.c.held.is_(sa.true()))
_keyed = sa.alias(jobs, "keyed")
# How many jobs of this job's key hold a slot (released and not ended).
_ACTIVE_OF_KEY = (
    sa.select(sa.func.count())
    .where(
        _keyed.c.concurrency_key == jobs.c.concurrency_key,
        _keyed.c.held.is_(sa.false()),
        _keyed.c.state.not_in(_ENDED),
    )
    .scalar_subquery()
)


class SqlGateRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add_dependencies(self, pairs: Sequence[tuple[UUID, UUID]]) -> None:
        if not pairs:
            return
        insert_rows(self._c, job_dependencies, [{"job_id": j, "depends_on": d} for j, d in pairs])
        # In the same transaction, under each parent's row lock: a finish of the parent
        # either waits for this commit and returns the flag set, or commits first, and
        # then the submitter's own release sees the parent ended.
        parents = sorted({d for _, d in pairs})
        for start in range(0, len(parents), _CHUNK):
            self._c.execute(
                jobs.update()
                .where(jobs.c.id.in_(parents[start : start + _CHUNK]))
                .where(jobs.c.has_dependents.is_(sa.false()))
                .values(has_dependents=True)
            )

    def states_of(self, job_ids: Collection[UUID]) -> dict[UUID, JobState]:
        ids = list(job_ids)
        out: dict[UUID, JobState] = {}
        for start in range(0, len(ids), _CHUNK):
            stmt = sa.select(jobs.c.id, jobs.c.state).where(
                jobs.c.id.in_(ids[start : start + _CHUNK])
            )
            out.update((i, JobState(s)) for i, s in self._c.execute(stmt).all())
        return out

    def dependencies(self, job_id: UUID) -> dict[UUID, JobState]:
        stmt = (
            sa.select(jobs.c.id, jobs.c.state)
            .select_from(job_dependencies.join(jobs, jobs.c.id == job_dependencies.c.depends_on))
            .where(job_dependencies.c.job_id == job_id)
        )
        return {i: JobState(s) for i, s in self._c.execute(stmt).all()}

    def dependents(self, job_ids: Collection[UUID], *, limit: int) -> list[Job]:
        ids = list(job_ids)
        if not ids:
            return []
        waiting = sa.select(job_dependencies.c.job_id).where(job_dependencies.c.depends_on.in_(ids))
        stmt = (
            sa.select(jobs)
            .where(_HELD, jobs.c.id.in_(waiting))
            .order_by(jobs.c.priority.desc(), jobs.c.created_at)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def lock_key(self, key: str) -> None:
        if self._c.dialect.name == "postgresql":
            # A transaction-scoped advisory lock per key: no table of keys to keep, and
            # released with the transaction. SQLite serialises writers anyway
            # (BEGIN IMMEDIATE).
            self._c.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )

    def active_with_key(self, key: str) -> int:
        stmt = sa.select(sa.func.count()).where(
            jobs.c.concurrency_key == key,
            jobs.c.held.is_(sa.false()),
            jobs.c.state.not_in(_ENDED),
        )
        return int(self._c.execute(stmt).scalar_one())

    def waiting_on_key(self, key: str, *, limit: int) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(
                _HELD,
                jobs.c.concurrency_key == key,
                jobs.c.hold_until.is_(None),
                ~OPEN_DEPENDENCY,
            )
            .order_by(jobs.c.priority.desc(), jobs.c.created_at)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def due(self, now: datetime, *, limit: int) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(_HELD, jobs.c.hold_until <= now)
            .order_by(jobs.c.hold_until)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def next_due(self) -> datetime | None:
        stmt = sa.select(sa.func.min(jobs.c.hold_until)).where(_HELD)
        value: datetime | None = self._c.execute(stmt).scalar()
        return value

    def unblocked(self, *, limit: int) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(
                _HELD,
                jobs.c.hold_until.is_(None),
                ~OPEN_DEPENDENCY,
                sa.or_(
                    jobs.c.concurrency_key.is_(None),
                    sa.func.coalesce(jobs.c.max_concurrency, 1) > _ACTIVE_OF_KEY,
                ),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.created_at)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]
