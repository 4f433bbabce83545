"""Jobs and their attempts, in SQL."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.domain.records import Attempt, Job
from hodei.domain.states import JobState, WorkerState
from hodei.errors import DuplicateIdempotencyKey, InvalidConfiguration
from hodei.services.ports.store import JobQuery
from hodei.store import statements
from hodei.store.driver_statement import driver_statement, insert_rows
from hodei.store.event_repository import SqlEventRepository
from hodei.store.mapping import (
    attempt_from_row,
    attempt_to_row,
    event_to_row,
    job_from_row,
    job_to_row,
    normalise_changes,
)
from hodei.store.statements import NEW_EVENT_COLUMNS, bound_columns, prefixed, where_params
from hodei.store.tables import (
    domain_events,
    job_attempts,
    job_dependencies,
    job_logs,
    jobs,
    workers,
)

# Rows per set-based statement: far below SQLite's limit on bound parameters.
_SET_CHUNK = 500

_TERMINAL = [
    str(s) for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED)
]


@functools.cache
def _create_with_events(event_count: int) -> sa.Insert:
    """``WITH new_job AS (INSERT INTO jobs ...) INSERT INTO domain_events ...``: a job and
    its events in one PostgreSQL statement. Parameters ``j_<column>``, ``e<n>_<column>``."""
    new_job = jobs.insert().values(bound_columns(jobs, jobs.c.keys(), "j_")).cte("new_job")
    rows = [bound_columns(domain_events, NEW_EVENT_COLUMNS, f"e{n}_") for n in range(event_count)]
    # SQLAlchemy caches the compiled form of a single-row VALUES but not of a multi-row
    # one: the usual case (JobCreated alone) must be the former, or every submit would
    # compile the statement anew. The rows of one VALUES get their ids in order.
    return domain_events.insert().values(rows[0] if event_count == 1 else rows).add_cte(new_job)


@contextlib.contextmanager
def _idempotency_key_taken() -> Iterator[None]:
    """A concurrent submit stored the same idempotency key first: say so, so the caller
    can read that job instead."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        if "idempotency_key" in str(exc.orig):
            raise DuplicateIdempotencyKey("another job was just submitted with this key") from exc
        raise


Seal = Callable[[Mapping[str, str]], str]


class SqlJobRepository:
    def __init__(self, connection: sa.Connection, seal: Seal | None = None) -> None:
        self._c = connection
        self._seal = seal

    def _row(self, job: Job) -> dict[str, Any]:
        row = job_to_row(job)
        if job.spec.secret_env:
            if self._seal is None:
                raise InvalidConfiguration("this store cannot encrypt secret_env")
            row["secret_env"] = self._seal(job.spec.secret_env)
        return row

    def add(self, *new_jobs: Job) -> None:
        with _idempotency_key_taken():
            insert_rows(self._c, jobs, [self._row(j) for j in new_jobs])

    def create(self, job: Job, events: Sequence[DomainEvent]) -> None:
        if self._c.dialect.name != "postgresql" or not events:
            self.add(job)
            SqlEventRepository(self._c).add(*events)
            return
        params = prefixed(self._row(job), "j_")
        for n, event in enumerate(events):
            params.update(prefixed(event_to_row(event), f"e{n}_"))
        create = driver_statement(_create_with_events(len(events)), self._c)
        assert create is not None, "on PostgreSQL, as checked above"
        with _idempotency_key_taken():
            create.execute(self._c, params)

    def get(self, job_id: UUID) -> Job | None:
        stmt = statements.select_by(jobs, "id")
        row = self._c.execute(stmt, where_params(id=job_id)).mappings().first()
        return job_from_row(row) if row else None

    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        return statements.ids_between(self._c, jobs, low, high, limit=limit)

    def get_by_idempotency_key(self, key: str) -> Job | None:
        query = sa.select(jobs).where(jobs.c.idempotency_key == key)
        row = self._c.execute(query).mappings().first()
        return job_from_row(row) if row else None

    def compare_and_set(
        self,
        job_id: UUID,
        *,
        states: Collection[JobState],
        expected_attempt: int | None = None,
        held_by: UUID | None = None,
        expected_held: bool | None = None,
        **changes: Any,
    ) -> sa.Row[tuple[bool]] | None:
        """Apply ``changes`` if the job is in one of ``states`` (and at ``expected_attempt``,
        running on ``held_by``, and ``expected_held`` or not): the guard of a transition.
        The job's ``has_dependents`` as updated, None if the guard did not hold."""
        where = where_params(id=job_id)
        if expected_attempt is not None:
            where["w_attempt"] = expected_attempt
        if held_by is not None:
            where["w_worker_id"] = held_by
        if expected_held is not None:
            where["w_held"] = expected_held
        stmt = statements.conditional_update(jobs, _names(states), _keys(where))
        stmt = stmt.returning(jobs.c.has_dependents)
        return self._c.execute(stmt, {**normalise_changes(changes), **where}).first()

    def compare_and_set_many(
        self,
        targets: Collection[tuple[UUID, int]],
        *,
        states: Collection[JobState],
        **changes: Any,
    ) -> list[UUID]:
        values = normalise_changes(changes)
        pairs = list(targets)
        moved: list[UUID] = []
        for start in range(0, len(pairs), _SET_CHUNK):
            query = (
                jobs.update()
                .where(
                    jobs.c.state.in_(_names(states)),
                    sa.tuple_(jobs.c.id, jobs.c.attempt).in_(pairs[start : start + _SET_CHUNK]),
                )
                .values(**values)
                .returning(jobs.c.id)
            )
            moved.extend(self._c.execute(query).scalars())
        return moved

    def search(self, query: JobQuery) -> list[Job]:
        stmt = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if query.states:
            stmt = stmt.where(jobs.c.state.in_([str(s) for s in query.states]))
        if query.name:
            stmt = stmt.where(jobs.c.name == query.name)
        if query.correlation_id:
            stmt = stmt.where(jobs.c.correlation_id == query.correlation_id)
        if query.provider_id:
            stmt = stmt.where(jobs.c.provider_id == query.provider_id)
        if query.before:
            created_at, job_id = query.before
            stmt = stmt.where(
                sa.or_(
                    jobs.c.created_at < created_at,
                    sa.and_(jobs.c.created_at == created_at, jobs.c.id < job_id),
                )
            )
        rows = self._c.execute(stmt.limit(query.limit)).mappings()
        return [job_from_row(r) for r in rows]

    def due_for_dispatch(
        self, *, now: datetime, created_before: datetime, limit: int, queue: str | None = None
    ) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(
                jobs.c.state == str(JobState.PENDING),
                jobs.c.queue.is_not(None),
                jobs.c.held.is_(sa.false()),
                sa.or_(
                    sa.and_(jobs.c.next_attempt_at.is_(None), jobs.c.updated_at < created_before),
                    jobs.c.next_attempt_at <= now,
                ),
            )
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        if queue is not None:
            stmt = stmt.where(jobs.c.queue == queue)
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def waiting_for_provider(self, *, limit: int) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(
                jobs.c.state == str(JobState.PENDING),
                jobs.c.queue.is_(None),
                jobs.c.held.is_(sa.false()),
            )
            .order_by(jobs.c.created_at, jobs.c.id)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def stranded_queued(self, *, queued_before: datetime, limit: int) -> list[Job]:
        # Idle all along: a worker that is READY for a moment between two jobs of a
        # backlog must not make the jobs still waiting behind them look stranded.
        recent = sa.alias(jobs, "recent")
        busy_since = sa.exists().where(
            recent.c.worker_id == workers.c.id,
            sa.or_(recent.c.started_at >= queued_before, recent.c.finished_at >= queued_before),
        )
        idle = sa.select(workers.c.queue).where(
            workers.c.state == str(WorkerState.READY),
            workers.c.registered_at < queued_before,
            ~busy_since,
        )
        stmt = (
            sa.select(jobs)
            .where(
                jobs.c.state == str(JobState.QUEUED),
                jobs.c.queued_at < queued_before,
                jobs.c.queue.in_(idle),
            )
            .order_by(jobs.c.queued_at)
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def running_on_workers(self, worker_ids: Collection[UUID]) -> list[Job]:
        if not worker_ids:
            return []
        stmt = sa.select(jobs).where(
            jobs.c.state == str(JobState.RUNNING), jobs.c.worker_id.in_(list(worker_ids))
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def running_past_deadline(self, now: datetime, limit: int) -> list[Job]:
        dead = [str(WorkerState.LOST), str(WorkerState.TERMINATED)]
        gone = sa.select(workers.c.id).where(workers.c.state.in_(dead))
        stmt = (
            sa.select(jobs)
            .where(
                jobs.c.state == str(JobState.RUNNING),
                jobs.c.deadline_at < now,
                sa.or_(jobs.c.worker_id.is_(None), jobs.c.worker_id.in_(gone)),
            )
            .limit(limit)
        )
        return [job_from_row(r) for r in self._c.execute(stmt).mappings()]

    def count_waiting(self, queue: str) -> int:
        stmt = sa.select(sa.func.count()).where(
            jobs.c.queue == queue,
            jobs.c.state.in_([str(JobState.PENDING), str(JobState.QUEUED)]),
            jobs.c.held.is_(sa.false()),  # a held job needs no worker yet
        )
        return int(self._c.execute(stmt).scalar_one())

    def count_running_for_worker(self, worker_id: UUID) -> int:
        stmt = sa.select(sa.func.count()).where(
            jobs.c.worker_id == worker_id, jobs.c.state == str(JobState.RUNNING)
        )
        return int(self._c.execute(stmt).scalar_one())

    def is_cancel_requested(self, job_id: UUID) -> bool:
        stmt = sa.select(jobs.c.cancel_requested_at).where(jobs.c.id == job_id)
        return self._c.execute(stmt).scalar() is not None

    def purge_finished(self, before: datetime, limit: int) -> int:
        ids = list(
            self._c.execute(
                sa.select(jobs.c.id)
                .where(jobs.c.state.in_(_TERMINAL), jobs.c.finished_at < before)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return 0
        # Children first: SQLite only cascades with foreign keys on, so be explicit.
        self._c.execute(job_logs.delete().where(job_logs.c.job_id.in_(ids)))
        self._c.execute(job_attempts.delete().where(job_attempts.c.job_id.in_(ids)))
        self._c.execute(
            job_dependencies.delete().where(
                sa.or_(job_dependencies.c.job_id.in_(ids), job_dependencies.c.depends_on.in_(ids))
            )
        )
        self._c.execute(domain_events.delete().where(domain_events.c.aggregate_id.in_(ids)))
        self._c.execute(jobs.delete().where(jobs.c.id.in_(ids)))
        return len(ids)


class SqlAttemptRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, *new_attempts: Attempt) -> None:
        insert_rows(self._c, job_attempts, [attempt_to_row(a) for a in new_attempts])

    def update(self, job_id: UUID, attempt_no: int, **changes: Any) -> None:
        stmt = statements.update_by(job_attempts, "job_id", "attempt_no")
        where = where_params(job_id=job_id, attempt_no=attempt_no)
        self._c.execute(stmt, {**normalise_changes(changes), **where})

    def search(self, job_id: UUID) -> list[Attempt]:
        stmt = (
            sa.select(job_attempts)
            .where(job_attempts.c.job_id == job_id)
            .order_by(job_attempts.c.attempt_no)
        )
        return [attempt_from_row(r) for r in self._c.execute(stmt).mappings()]


def _names(states: Collection[JobState]) -> tuple[str, ...]:
    return tuple(str(s) for s in states)


def _keys(where: dict[str, object]) -> tuple[str, ...]:
    """The WHERE keys of a prepared statement besides its id, in a stable order."""
    return tuple(k.removeprefix("w_") for k in where if k != "w_id")
