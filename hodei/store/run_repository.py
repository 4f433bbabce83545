"""The writes that queue, start and finish an attempt, each all or nothing behind one guard.

Queueing an attempt changes three rows (the job, a new attempt row, a new event);
starting one changes four (the job, its attempt, the worker, a new event), and so does
finishing one. Each is guarded by a conditional update of the job: if the job is not
where the caller expects it, nothing is written. On PostgreSQL the writes go as one
statement, data-modifying CTEs that depend on the guard's RETURNING, so a claim or a
finish is one round trip instead of four. Elsewhere (SQLite, where a
statement costs no round trip) the same statements run one after another.

Starting needs no read of the job beforehand: its deadline is computed in SQL from the
job's timeout, and its event takes the job's correlation id from the guard's row.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.domain.records import Attempt, Job
from hodei.domain.states import AttemptState, JobState, WorkerState
from hodei.store.driver_statement import driver_statement
from hodei.store.expressions import seconds_after
from hodei.store.mapping import attempt_to_row, event_to_row, job_from_row
from hodei.store.statements import NEW_EVENT_COLUMNS, bound_columns, one_of, prefixed
from hodei.store.tables import domain_events, job_attempts, jobs, workers
from hodei.store.worker_repository import job_done_statement


@dataclass(frozen=True)
class _NewRow:
    """A row to insert, its values the parameters ``<prefix><column>``, except the
    ``from_job`` columns, copied from the job the guard moved (the caller need not have
    read it)."""

    table: sa.Table
    columns: tuple[str, ...]
    prefix: str
    from_job: tuple[str, ...] = ()

    @functools.cached_property
    def insert(self) -> sa.Insert:
        return self.table.insert().values(bound_columns(self.table, self.columns, self.prefix))

    def params_from(self, job_row: Mapping[Any, Any]) -> dict[str, Any]:
        """The parameters that :attr:`insert` takes from the moved job's row."""
        return {f"{self.prefix}{column}": job_row[column] for column in self.from_job}

    def insert_if(self, moved: sa.CTE) -> sa.Insert:
        """INSERT ... SELECT <values> FROM moved: one row if the guard matched, else none.

        psycopg's dialect casts every parameter to its column's type, which the SELECT
        list of INSERT ... SELECT needs."""
        bound = bound_columns(self.table, self.columns, self.prefix)
        values = [moved.c[c] if c in self.from_job else bound[c] for c in self.columns]
        return self.table.insert().from_select(
            list(self.columns), sa.select(*values).select_from(moved)
        )


_EVENT_ROW = _NewRow(domain_events, NEW_EVENT_COLUMNS, "e_")
# The event of a write whose caller did not read the job: its correlation id is the job's.
_EVENT_ROW_OF_JOB = _NewRow(domain_events, NEW_EVENT_COLUMNS, "e_", from_job=("correlation_id",))


@dataclass(frozen=True)
class _GuardedWrite:
    """A conditional UPDATE of one job (the guard) and the writes that follow it.

    Parameters are prefixed per statement (``g_`` guard, ``a_`` attempt, ``w_`` worker,
    ``e_`` event), so one dictionary serves the combined statement and its parts.
    """

    guard: sa.Update  # ... RETURNING the job's columns
    followers: tuple[sa.Update, ...]
    new_rows: tuple[_NewRow, ...]

    @functools.cached_property
    def combined(self) -> sa.Select[Any]:
        """The whole write as one PostgreSQL statement."""
        moved = self.guard.cte("moved")
        matched = sa.exists(sa.select(moved.c.id))
        ctes = [f.where(matched).cte(f"follow_{n}") for n, f in enumerate(self.followers)]
        ctes += [row.insert_if(moved).cte(f"insert_{n}") for n, row in enumerate(self.new_rows)]
        return sa.select(moved).add_cte(*ctes)

    def execute(
        self, connection: sa.Connection, params: Mapping[str, Any]
    ) -> Mapping[Any, Any] | None:
        """The guard's RETURNING row once everything is written; None if it matched
        nothing, and then nothing is written."""
        combined = driver_statement(self.combined, connection)
        if combined is not None:
            return combined.first(connection, params)
        row = connection.execute(self.guard, params).mappings().first()
        if row is None:
            return None
        for follower in self.followers:
            connection.execute(follower, params)
        for new_row in self.new_rows:
            connection.execute(new_row.insert, {**params, **new_row.params_from(row)})
        return row


def _guard(
    states: Sequence[JobState],
    sets: Sequence[str],
    *,
    held: bool,
    computed: Mapping[str, sa.ColumnElement[Any]] | None = None,
    returning: Sequence[sa.ColumnElement[Any]] = (jobs.c.id,),
) -> sa.Update:
    """The conditional UPDATE of the job. It returns only the id unless asked for more:
    each column returned costs the driver and SQLAlchemy work on every execution."""
    stmt = (
        jobs.update()
        .where(
            jobs.c.id == sa.bindparam("g_id"),
            jobs.c.attempt == sa.bindparam("g_attempt"),
            one_of(jobs.c.state, [str(s) for s in states]),
        )
        .values({**bound_columns(jobs, sets, "g_"), **(computed or {})})
        .returning(*returning)
    )
    return stmt.where(jobs.c.worker_id == sa.bindparam("g_worker_id")) if held else stmt


def _attempt_update(sets: Sequence[str]) -> sa.Update:
    return (
        job_attempts.update()
        .where(
            job_attempts.c.job_id == sa.bindparam("g_id"),
            job_attempts.c.attempt_no == sa.bindparam("g_attempt"),
        )
        .values(bound_columns(job_attempts, sets, "a_"))
    )


_ATTEMPT_COLUMNS = tuple(c.name for c in job_attempts.c)


def _queue_write() -> _GuardedWrite:
    return _GuardedWrite(
        guard=_guard(
            [JobState.PENDING],
            ("state", "queued_at", "next_attempt_at", "updated_at"),
            held=False,
        ),
        followers=(),
        new_rows=(_NewRow(job_attempts, _ATTEMPT_COLUMNS, "a_"), _EVENT_ROW),
    )


def _start_write() -> _GuardedWrite:
    busy = (
        workers.update()
        .where(
            workers.c.id == sa.bindparam("w_id"),
            one_of(
                workers.c.state,
                [
                    str(s)
                    for s in (
                        WorkerState.READY,
                        WorkerState.BUSY,
                        WorkerState.REGISTERED,
                        WorkerState.DEGRADED,
                    )
                ],
            ),
        )
        .values(
            state=str(WorkerState.BUSY),
            running_jobs=workers.c.running_jobs + 1,
            current_job_id=sa.bindparam("w_job_id", type_=workers.c.current_job_id.type),
            updated_at=sa.bindparam("w_now", type_=workers.c.updated_at.type),
        )
    )
    # The claim reads nothing first: the deadline comes from the job's own timeout and
    # the event's correlation id from the job's row.
    deadline = seconds_after(
        sa.bindparam("g_started_at", type_=jobs.c.started_at.type),
        jobs.c.spec["timeout_s"].as_integer(),
    )
    return _GuardedWrite(
        guard=_guard(
            [JobState.QUEUED],
            ("state", "worker_id", "started_at", "updated_at"),
            held=False,
            computed={"deadline_at": deadline},
            returning=list(jobs.c),  # the runner's job, as started
        ),
        followers=(_attempt_update(("state", "worker_id", "started_at", "task_id")), busy),
        new_rows=(_EVENT_ROW_OF_JOB,),
    )


def _finish_write() -> _GuardedWrite:
    job_done = job_done_statement()
    return _GuardedWrite(
        guard=_guard(
            [JobState.RUNNING],
            ("state", "exit_code", "failure_reason", "error", "finished_at", "updated_at"),
            held=True,
            # Read under the row's lock, which a submit adding a dependent of this job
            # also takes to set it: the flag is exact for the ending (gates.after_end).
            returning=(jobs.c.id, jobs.c.has_dependents),
        ),
        followers=(
            _attempt_update(("state", "finished_at", "exit_code", "signal", "error")),
            job_done,
        ),
        new_rows=(_EVENT_ROW,),
    )


_QUEUE = _queue_write()
_START = _start_write()
_FINISH = _finish_write()


class SqlRunRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def queue(self, new_attempt: Attempt, *, now: datetime, event: DomainEvent) -> bool:
        params = {
            "g_id": new_attempt.job_id,
            "g_attempt": new_attempt.attempt_no,
            "g_state": str(JobState.QUEUED),
            "g_queued_at": now,
            "g_next_attempt_at": None,
            "g_updated_at": now,
            **prefixed(attempt_to_row(new_attempt), "a_"),
            **prefixed(event_to_row(event), "e_"),
        }
        return _QUEUE.execute(self._c, params) is not None

    def start(
        self,
        job_id: UUID,
        attempt: int,
        *,
        worker_id: UUID,
        task_id: str,
        now: datetime,
        event: DomainEvent,
    ) -> Job | None:
        params = {
            "g_id": job_id,
            "g_attempt": attempt,
            "g_state": str(JobState.RUNNING),
            "g_worker_id": worker_id,
            "g_started_at": now,
            "g_updated_at": now,
            "a_state": str(AttemptState.RUNNING),
            "a_worker_id": worker_id,
            "a_started_at": now,
            "a_task_id": task_id,
            "w_id": worker_id,
            "w_job_id": job_id,
            "w_now": now,
            **prefixed(event_to_row(event), "e_"),
        }
        row = _START.execute(self._c, params)
        return job_from_row(row) if row else None

    def finish(
        self,
        job_id: UUID,
        attempt: int,
        *,
        worker_id: UUID,
        now: datetime,
        state: JobState,
        attempt_state: AttemptState,
        exit_code: int | None,
        signal: int | None,
        failure_reason: str | None,
        error: str | None,
        event: DomainEvent,
    ) -> bool | None:
        """None if the guard did not hold (nothing written); else whether a job runs after
        this one (``has_dependents`` as the finish left it)."""
        params = {
            "g_id": job_id,
            "g_attempt": attempt,
            "g_worker_id": worker_id,
            "g_state": str(state),
            "g_exit_code": exit_code,
            "g_failure_reason": failure_reason,
            "g_error": error,
            "g_finished_at": now,
            "g_updated_at": now,
            "a_state": str(attempt_state),
            "a_finished_at": now,
            "a_exit_code": exit_code,
            "a_signal": signal,
            "a_error": error,
            "w_id": worker_id,
            "w_now": now,
            **prefixed(event_to_row(event), "e_"),
        }
        row = _FINISH.execute(self._c, params)
        return None if row is None else bool(row["has_dependents"])
