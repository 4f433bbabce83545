"""The operators' read models in SQL (:mod:`hodei.services.ports.reads`).

Every query is indexed or bounded by what is active now; EXPLAIN output for the key
ones is in docs/performance.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hodei.domain.events import DomainEvent
from hodei.domain.records import Attempt, BootstrapToken, Job, Provider, Worker
from hodei.domain.schedules import Schedule
from hodei.domain.states import LIVE_WORKER_STATES, JobState, WorkerState
from hodei.services.ports.reads import ChainAnomaly, QueueDepth, TransitionRules
from hodei.services.ports.store import EventQuery
from hodei.store import doctor_queries
from hodei.store.engine import database_errors, read_only
from hodei.store.event_repository import SqlEventRepository
from hodei.store.gate_repository import OPEN_DEPENDENCY, SqlGateRepository
from hodei.store.job_repository import SqlAttemptRepository, SqlJobRepository
from hodei.store.mapping import event_from_row, job_from_row, worker_from_row
from hodei.store.provider_repository import SqlProviderRepository
from hodei.store.schedule_repository import SqlScheduleRepository
from hodei.store.tables import domain_events as events
from hodei.store.tables import job_attempts, jobs, state_counts, workers
from hodei.store.tables import worker_bootstrap_tokens as tokens
from hodei.store.worker_repository import (
    SqlTokenRepository,
    SqlWorkerRepository,
    holds_capacity,
)

_PENDING, _QUEUED, _RUNNING = (
    str(s) for s in (JobState.PENDING, JobState.QUEUED, JobState.RUNNING)
)


class SqlOperatorReads:
    """:class:`hodei.services.ports.reads.OperatorReads` on one connection."""

    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection
        self._jobs = SqlJobRepository(connection)
        self._workers = SqlWorkerRepository(connection)

    # -- status ---------------------------------------------------------------------

    def state_counts(self) -> dict[str, dict[str, int]]:
        stmt = sa.select(
            state_counts.c.entity, state_counts.c.state, sa.func.sum(state_counts.c.delta)
        ).group_by(state_counts.c.entity, state_counts.c.state)
        out: dict[str, dict[str, int]] = {}
        for entity, state, total in self._c.execute(stmt).all():
            out.setdefault(entity, {})[state] = int(total or 0)
        return out

    def tally_rows(self) -> int:
        stmt = sa.select(sa.func.count()).select_from(state_counts)
        return int(self._c.execute(stmt).scalar_one())

    def queue_depths(self) -> list[QueueDepth]:
        # Bounded by the active jobs: ix_jobs_state_created_at narrows to three states.
        def when(state: str, value: sa.ColumnElement[object]) -> sa.Case[object]:
            return sa.case((jobs.c.state == state, value))

        stmt = (
            sa.select(
                jobs.c.queue,
                sa.func.count(when(_PENDING, sa.literal(1))),
                sa.func.count(when(_QUEUED, sa.literal(1))),
                sa.func.count(when(_RUNNING, sa.literal(1))),
                sa.func.min(when(_QUEUED, jobs.c.queued_at)),
                sa.func.min(when(_PENDING, jobs.c.updated_at)),
            )
            .where(jobs.c.state.in_([_PENDING, _QUEUED, _RUNNING]))
            .group_by(jobs.c.queue)
        )
        return [
            QueueDepth(
                queue=queue or "",
                pending=int(pending),
                queued=int(queued),
                running=int(running),
                oldest_queued_at=oldest_q,
                oldest_pending_at=oldest_p,
            )
            for queue, pending, queued, running, oldest_q, oldest_p in self._c.execute(stmt).all()
        ]

    def providers(self) -> list[Provider]:
        return SqlProviderRepository(self._c).search()

    def schedules(self) -> list[Schedule]:
        return SqlScheduleRepository(self._c).search()

    def live_workers(self, *, queue: str | None = None, limit: int = 1000) -> list[Worker]:
        return self._workers.search(states=LIVE_WORKER_STATES, queue=queue, limit=limit)

    def live_worker_counts(self) -> dict[tuple[UUID | None, str], int]:
        stmt = (
            sa.select(workers.c.provider_id, workers.c.state, sa.func.count())
            .where(holds_capacity())
            .group_by(workers.c.provider_id, workers.c.state)
        )
        return {(pid, state): int(n) for pid, state, n in self._c.execute(stmt).all()}

    def tokens_outstanding(self, now: datetime) -> int:
        return SqlTokenRepository(self._c).count_outstanding(now)

    def scheduler_leader(self) -> tuple[str, datetime, datetime] | None:
        from hodei.store.scheduler_state import read_leader

        found = read_leader(self._c)
        return (found.holder, found.acquired_at, found.renewed_at) if found else None

    # -- jobs, timeline and events -------------------------------------------------

    def job(self, job_id: UUID) -> Job | None:
        return self._jobs.get(job_id)

    def attempts(self, job_id: UUID) -> list[Attempt]:
        return SqlAttemptRepository(self._c).search(job_id)

    def worker(self, worker_id: UUID) -> Worker | None:
        return self._workers.get(worker_id)

    def jobs_in_workflow(self, correlation_id: str, limit: int) -> list[UUID]:
        stmt = (
            sa.select(jobs.c.id)
            .where(jobs.c.correlation_id == correlation_id)
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        return list(self._c.execute(stmt).scalars())

    def related_aggregates(self, job_ids: Collection[UUID]) -> list[UUID]:
        if not job_ids:
            return []
        ids = list(job_ids)
        from_attempts = sa.select(job_attempts.c.worker_id).where(
            job_attempts.c.job_id.in_(ids), job_attempts.c.worker_id.is_not(None)
        )
        from_jobs = sa.select(jobs.c.worker_id).where(
            jobs.c.id.in_(ids), jobs.c.worker_id.is_not(None)
        )
        worker_ids = set(self._c.execute(sa.union(from_attempts, from_jobs)).scalars())
        worker_ids.update(w.id for w in self.launch_failures(ids))
        if not worker_ids:
            return []
        token_ids = self._c.execute(
            sa.select(tokens.c.id).where(tokens.c.worker_id.in_(list(worker_ids)))
        ).scalars()
        return [*worker_ids, *token_ids]

    def launch_failures(self, job_ids: Collection[UUID], limit: int = 50) -> list[Worker]:
        """Workers launched for these jobs' queues while they waited (created after the
        job, before it started or ended) that never registered: PROVISION_FAILED, newest
        first. Driven by ix_workers_state_queue: the failed workers of a few queues."""
        if not job_ids:
            return []
        until = sa.func.coalesce(jobs.c.started_at, jobs.c.finished_at)
        stmt = (
            sa.select(workers)
            .join(jobs, jobs.c.queue == workers.c.queue)
            .where(
                jobs.c.id.in_(list(job_ids)),
                workers.c.state == str(WorkerState.PROVISION_FAILED),
                workers.c.created_at >= jobs.c.created_at,
                sa.or_(until.is_(None), workers.c.created_at <= until),
            )
            .distinct()
            .order_by(workers.c.created_at.desc())
            .limit(limit)
        )
        return [worker_from_row(r) for r in self._c.execute(stmt).mappings()]

    def events_of(
        self,
        aggregate_ids: Collection[UUID],
        correlation_id: str | None,
        limit: int,
        *,
        related: Collection[UUID] = (),
        related_since: datetime | None = None,
    ) -> list[DomainEvent]:
        conditions: list[sa.ColumnElement[bool]] = []
        if aggregate_ids:
            conditions.append(events.c.aggregate_id.in_(list(aggregate_ids)))
        if related:
            condition: sa.ColumnElement[bool] = events.c.aggregate_id.in_(list(related))
            if related_since is not None:
                condition = sa.and_(condition, events.c.occurred_at >= related_since)
            conditions.append(condition)
        if correlation_id:
            conditions.append(events.c.correlation_id == correlation_id)
        if not conditions:
            return []
        # One indexed branch per condition (an OR would defeat the indexes).
        branches = [sa.select(events).where(c) for c in conditions]
        union = sa.union(*branches).subquery()
        stmt = sa.select(union).order_by(union.c.id).limit(limit)
        return [event_from_row(r) for r in self._c.execute(stmt).mappings()]

    def events(self, query: EventQuery) -> list[DomainEvent]:
        if query.since is not None and query.after_id is None:
            # Start from the first id at or after ``since`` (ix_domain_events_occurred_at),
            # so the id-ordered read below never walks the history before it. ``id + 0``
            # keeps PostgreSQL from answering min(id) by walking the primary key from the
            # oldest event and filtering on time, which reads the whole history.
            first = self._c.execute(
                sa.select(sa.func.min(events.c.id + 0)).where(events.c.occurred_at >= query.since)
            ).scalar()
            if first is None:
                return []
            query = _with_after(query, int(first) - 1)
        return SqlEventRepository(self._c).search(query)

    def queue_position(self, job: Job) -> int:
        if job.queue is None or job.queued_at is None:
            return 0
        stmt = sa.select(sa.func.count()).where(
            jobs.c.state == _QUEUED,
            jobs.c.queue == job.queue,
            sa.or_(
                jobs.c.priority > job.priority,
                sa.and_(jobs.c.priority == job.priority, jobs.c.queued_at < job.queued_at),
            ),
        )
        return int(self._c.execute(stmt).scalar_one())

    def queued_with_higher_priority(self, job: Job) -> int:
        if job.queue is None:
            return 0
        stmt = sa.select(sa.func.count()).where(
            jobs.c.state == _QUEUED, jobs.c.queue == job.queue, jobs.c.priority > job.priority
        )
        return int(self._c.execute(stmt).scalar_one())

    def dependencies(self, job_id: UUID) -> dict[UUID, JobState]:
        return SqlGateRepository(self._c).dependencies(job_id)

    def active_with_key(self, key: str) -> int:
        return SqlGateRepository(self._c).active_with_key(key)

    def held_counts(self) -> dict[str, int]:
        # Bounded by the held jobs (ix_jobs_held_hold_until).
        reason = sa.case(
            (jobs.c.hold_until.is_not(None), "due_time"),
            (OPEN_DEPENDENCY, "dependencies"),
            else_="concurrency",
        )
        stmt = (
            sa.select(reason, sa.func.count())
            .where(jobs.c.held.is_(sa.true()), jobs.c.state == _PENDING)
            .group_by(reason)
        )
        return {str(r): int(n) for r, n in self._c.execute(stmt).all()}

    def queued_behind_priority(self) -> int:
        other = sa.alias(jobs, "other")
        outranked = (
            sa.select(sa.literal(1))
            .where(
                other.c.state == _QUEUED,
                other.c.queue == jobs.c.queue,
                other.c.priority > jobs.c.priority,
            )
            .exists()
        )
        stmt = sa.select(sa.func.count()).where(jobs.c.state == _QUEUED, outranked)
        return int(self._c.execute(stmt).scalar_one())

    # -- doctor (queries in doctor_queries.py) -------------------------------------

    def chain_anomalies(
        self, *, since: datetime, rules: TransitionRules, limit: int
    ) -> list[ChainAnomaly]:
        return doctor_queries.chain_anomalies(self._c, since=since, rules=rules, limit=limit)

    def jobs_without_events(self, *, since: datetime, limit: int) -> list[Job]:
        has_event = sa.select(events.c.id).where(events.c.aggregate_id == jobs.c.id).exists()
        stmt = (
            sa.select(jobs)
            .where(jobs.c.created_at >= since, ~has_event)
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def pending_unpublished(self, *, before: datetime, limit: int) -> list[Job]:
        return doctor_queries.pending_unpublished(self._c, before=before, limit=limit)

    def running_on_dead_workers(self, *, limit: int) -> list[tuple[Job, Worker | None]]:
        return doctor_queries.running_on_dead_workers(self._c, limit=limit)

    def running_unreported(self, *, limit: int) -> list[tuple[Job, Worker]]:
        return doctor_queries.running_unreported(self._c, limit=limit)

    def unmarked_expired_tokens(
        self, *, expired_before: datetime, limit: int
    ) -> list[BootstrapToken]:
        return doctor_queries.unmarked_expired_tokens(
            self._c, expired_before=expired_before, limit=limit
        )

    def unreaped_workers(self, *, heartbeat_before: datetime, limit: int) -> list[Worker]:
        return self._workers.stale(heartbeat_before=heartbeat_before, limit=limit)

    def last_health_change(self, provider_id: UUID) -> datetime | None:
        return doctor_queries.last_health_change(self._c, provider_id)


def _with_after(query: EventQuery, after_id: int) -> EventQuery:
    from dataclasses import replace

    return replace(query, after_id=after_id, since=query.since)


class SqlReadStore:
    """:class:`hodei.services.ports.reads.ReadStore` on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def read(self) -> Iterator[SqlOperatorReads]:
        with database_errors(), read_only(self.engine) as connection:
            yield SqlOperatorReads(connection)

    def fold_state_counts(self) -> int:
        with database_errors(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                return _fold_postgres(connection)
            return _fold_serialised(connection)


_FOLD_POSTGRES = sa.text(
    """
    WITH gone AS (DELETE FROM state_counts RETURNING entity, state, delta),
    kept AS (
        INSERT INTO state_counts (entity, state, delta)
        SELECT entity, state, sum(delta) FROM gone GROUP BY entity, state
        HAVING sum(delta) <> 0
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM kept)
    """
)


def _fold_postgres(connection: sa.Connection) -> int:
    # One statement: rows a concurrent fold deletes first are not summed twice, and rows
    # committed meanwhile are left for the next fold.
    return int(connection.execute(_FOLD_POSTGRES).scalar_one())


def _fold_serialised(connection: sa.Connection) -> int:
    # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so nothing else
    # writes between the sum and the delete.
    sums = connection.execute(
        sa.select(
            state_counts.c.entity, state_counts.c.state, sa.func.sum(state_counts.c.delta)
        ).group_by(state_counts.c.entity, state_counts.c.state)
    ).all()
    deleted = connection.execute(state_counts.delete()).rowcount
    kept = [{"entity": e, "state": s, "delta": int(n)} for e, s, n in sums if n]
    if kept:
        connection.execute(state_counts.insert(), kept)
    return int(deleted) - len(kept)
