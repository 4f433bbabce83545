"""Writing a :class:`hodei.domain.transitions.Transition` in SQL.

The guard (the job's conditional UPDATE, else the worker's) goes first; the rest is
written only if it matched, in the caller's transaction. Queueing, starting and
finishing an attempt go through :mod:`hodei.store.run_repository` instead, which writes
them as one statement on PostgreSQL: a store detail, which no use case chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa

from hodei.domain.transitions import Applied, Kind, Transition, WorkerChange, WorkerCount
from hodei.services.ports.store import AttemptRepository, EventRepository
from hodei.store.job_repository import SqlAttemptRepository, SqlJobRepository
from hodei.store.provider_repository import SqlProviderRepository
from hodei.store.run_repository import SqlRunRepository
from hodei.store.schedule_repository import SqlScheduleRepository
from hodei.store.worker_repository import SqlWorkerRepository


class SqlTransaction(Protocol):
    """What writing a transition needs of ``hodei.store.sql_store.SqlTransaction``."""

    connection: sa.Connection
    runs: SqlRunRepository
    attempts: AttemptRepository
    events: EventRepository


def apply(tx: SqlTransaction, t: Transition) -> Applied:
    """Write ``t`` on ``tx``'s connection if its guard holds."""
    if t.schedule is not None:
        wanted = t.schedule
        schedules = SqlScheduleRepository(tx.connection)
        if not schedules.set_if_paused(wanted.schedule_id, wanted.paused, **wanted.changes):
            return Applied(False)
        tx.events.add(*t.events)
        return Applied(True)
    if t.provider is not None:
        change, providers = t.provider, SqlProviderRepository(tx.connection)
        if not providers.compare_and_set(
            change.provider_id, expected_status=change.status, **change.changes
        ):
            return Applied(False)
        tx.events.add(*t.events)
        return Applied(True)
    if t.kind is Kind.QUEUE:
        return _queue(tx, t)
    if t.kind is Kind.START:
        return _start(tx, t)
    if t.kind is Kind.FINISH:
        return _finish(tx, t)
    has_dependents = None
    if t.job is not None:
        job = t.job
        moved = SqlJobRepository(tx.connection).compare_and_set(
            job.job_id,
            states=job.from_states,
            expected_attempt=job.attempt,
            held_by=job.worker_id,
            expected_held=job.held,
            **job.changes,
        )
        if moved is None:
            return Applied(False)
        has_dependents = moved.has_dependents
        if t.worker is not None:
            _worker(tx, t.worker)
    elif t.worker is not None and not _worker(tx, t.worker):
        return Applied(False)
    if t.attempt is not None:
        attempts = SqlAttemptRepository(tx.connection)
        attempts.update(t.attempt.job_id, t.attempt.attempt_no, **t.attempt.changes)
    if t.new_attempt is not None:
        tx.attempts.add(t.new_attempt)
    if t.events:
        tx.events.add(*t.events)
    return Applied(True, has_dependents=has_dependents)


def apply_all(tx: SqlTransaction, transitions: Sequence[Transition]) -> list[Transition]:
    """Queue transitions that change the same columns the same way go as a few
    set-based statements (a ``submit_many`` of thousands); anything else one by one."""
    if len(transitions) > 1 and _same_queue(transitions):
        by_job = {t.job.job_id: t for t in transitions if t.job is not None}
        first = transitions[0].job
        assert first is not None
        moved = SqlJobRepository(tx.connection).compare_and_set_many(
            [(t.job.job_id, t.job.attempt or 0) for t in by_job.values() if t.job is not None],
            states=first.from_states,
            **first.changes,
        )
        won = [by_job[job_id] for job_id in moved]
        if won:
            tx.attempts.add(*(t.new_attempt for t in won if t.new_attempt is not None))
            tx.events.add(*(e for t in won for e in t.events))
        return won
    return [t for t in transitions if apply(tx, t)]


def _same_queue(transitions: Sequence[Transition]) -> bool:
    first = transitions[0].job
    return first is not None and all(
        t.kind is Kind.QUEUE
        and t.job is not None
        and t.job.attempt is not None
        and t.job.changes == first.changes
        for t in transitions
    )


def _worker(tx: SqlTransaction, change: WorkerChange) -> bool:
    now = change.changes["updated_at"]
    workers = SqlWorkerRepository(tx.connection)
    if change.silent_since is not None:
        return workers.mark_lost(
            change.worker_id,
            heartbeat_before=change.silent_since,
            now=now,
            reason=change.changes["termination_reason"],
        )
    if change.count is WorkerCount.DONE:
        workers.job_done(change.worker_id, now)
        return True
    if change.count is WorkerCount.FOLLOW:
        return workers.follow_count(change.worker_id, states=change.from_states, now=now)
    assert change.count is None, "a worker starts a job only by a START, in one statement"
    return workers.compare_and_set(change.worker_id, states=change.from_states, **change.changes)


def _queue(tx: SqlTransaction, t: Transition) -> Applied:
    assert t.job is not None and t.new_attempt is not None
    [event] = t.events
    return Applied(tx.runs.queue(t.new_attempt, now=t.job.changes["queued_at"], event=event))


def _start(tx: SqlTransaction, t: Transition) -> Applied:
    assert t.job is not None and t.job.attempt is not None and t.attempt is not None
    [event] = t.events
    started = tx.runs.start(
        t.job.job_id,
        t.job.attempt,
        worker_id=t.job.changes["worker_id"],
        task_id=t.attempt.changes["task_id"],
        now=t.job.changes["started_at"],
        event=event,
    )
    return Applied(started is not None, started)


def _finish(tx: SqlTransaction, t: Transition) -> Applied:
    job, attempt = t.job, t.attempt
    assert job is not None and job.attempt is not None and job.worker_id is not None
    assert attempt is not None
    [event] = t.events
    has_dependents = tx.runs.finish(
        job.job_id,
        job.attempt,
        worker_id=job.worker_id,
        now=job.changes["finished_at"],
        state=job.changes["state"],
        attempt_state=attempt.changes["state"],
        exit_code=job.changes["exit_code"],
        signal=attempt.changes["signal"],
        failure_reason=job.changes["failure_reason"],
        error=job.changes["error"],
        event=event,
    )
    return Applied(has_dependents is not None, has_dependents=has_dependents)
