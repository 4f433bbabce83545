"""Every change of a job's, a worker's, a provider's or a schedule's state, one pure
function each.

A function takes the record as the caller read it (or, where the caller reads nothing
first, its identity) and returns a :class:`Transition`: which row changes and under
which guard, what happens to the attempt and the worker, and the event(s). It checks
the change against the tables in :mod:`hodei.domain.states`. The store writes a
transition with ``apply``, all or nothing, and only if the guard still holds; no
use case names a column.

To add a state change: write its function here (its guard, its changes, its events),
give it a :class:`Kind`, and call ``tx.apply(...)`` (or ``store.apply(...)``) with it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from hodei.domain.event_builders import job_event, job_event_for, provider_event, worker_event
from hodei.domain.events import Actor, DomainEvent, EventType
from hodei.domain.records import Attempt, Job, Provider, Worker, provider_of_queue
from hodei.domain.schedules import Schedule, schedule_event
from hodei.domain.states import (
    LAUNCHING_REF,
    LIVE_WORKER_STATES,
    REGISTERED_WORKER_STATES,
    AttemptState,
    FailureReason,
    JobState,
    ProviderHealth,
    ProviderStatus,
    WorkerState,
    ensure_transition,
    ensure_worker_transition,
)


class Kind(StrEnum):
    """What a transition does; a store may write some kinds in a way of its own (one
    statement on PostgreSQL for queue, start and finish)."""

    QUEUE = "queue"
    START = "start"
    FINISH = "finish"
    RETRY = "retry"
    REOPEN = "reopen"  # a manual retry
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEST_CANCEL = "request_cancel"
    REQUEUE_LOST = "requeue_lost"
    TIME_OUT = "time_out"
    ASSIGN = "assign"
    REPUBLISH = "republish"
    RELEASE = "release"  # a held job's gates opened: it may be published
    PASS_DUE = "pass_due"  # its due time passed, another gate still holds it
    REGISTER = "register"
    HEARTBEAT = "heartbeat"
    LAUNCHED = "launched"
    TOUCH = "touch"
    DRAIN = "drain"
    DEGRADE = "degrade"  # the worker cannot reach its broker
    RECONNECT = "reconnect"  # it can again
    LOSE = "lose"
    TERMINATE = "terminate"
    PROVISION_FAILED = "provision_failed"
    PROVIDER_STATUS = "provider_status"
    PROVIDER_HEALTH = "provider_health"
    PROVIDER_UPDATE = "provider_update"
    SCHEDULE_PAUSE = "schedule_pause"
    SCHEDULE_RESUME = "schedule_resume"


class WorkerCount(StrEnum):
    """A change of a worker's running-job count, which its BUSY/READY state follows."""

    BUSY = "busy"  # one more running job: BUSY
    DONE = "done"  # one fewer, one more executed: READY again once it runs none
    FOLLOW = "follow"  # no change of the count: BUSY if it runs any, else READY


@functools.cache
def _check_job(from_states: frozenset[JobState], new: JobState, manual_retry: bool) -> None:
    """Raise unless every ``from_states`` -> ``new`` is in the table (cached: the per-job
    path asks the same few questions again and again)."""
    for old in from_states:
        ensure_transition(old, new, manual_retry=manual_retry)


@functools.cache
def _check_worker(from_states: frozenset[WorkerState], new: WorkerState) -> None:
    for old in from_states:
        ensure_worker_transition(old, new)


@dataclass(frozen=True, slots=True)
class JobChange:
    """Set ``changes`` on the job if it is in one of ``from_states`` (and, when given,
    at ``attempt`` and running on ``worker_id``)."""

    job_id: UUID
    from_states: frozenset[JobState]
    changes: Mapping[str, Any]
    attempt: int | None = None
    worker_id: UUID | None = None
    manual_retry: bool = False
    held: bool | None = None  # when given, the job's ``held`` must be this too

    def __post_init__(self) -> None:
        new = self.changes.get("state")
        if new is not None:
            _check_job(self.from_states, new, self.manual_retry)


@dataclass(frozen=True, slots=True)
class WorkerChange:
    """Set ``changes`` on the worker (and count a job, see :class:`WorkerCount`) if it is
    in one of ``from_states`` (and, when given, silent since ``silent_since``)."""

    worker_id: UUID
    from_states: frozenset[WorkerState]
    changes: Mapping[str, Any] = field(default_factory=dict)
    count: WorkerCount | None = None
    silent_since: datetime | None = None

    def __post_init__(self) -> None:
        new = self.changes.get("state")
        if new is not None:
            _check_worker(self.from_states, new)


@dataclass(frozen=True, slots=True)
class ProviderChange:
    """Set ``changes`` on the provider (if its status is still ``status``, when given)."""

    provider_id: UUID
    changes: Mapping[str, Any]
    status: ProviderStatus | None = None


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """Set ``changes`` on the schedule if it is still paused (or not) as ``paused``."""

    schedule_id: UUID
    paused: bool
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AttemptChange:
    """Set ``changes`` on attempt ``attempt_no`` of the job."""

    job_id: UUID
    attempt_no: int
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, written all or nothing. The guard is the job change when there
    is one, else the worker change, else the provider's or the schedule's change: if it
    no longer holds, nothing is written."""

    kind: Kind
    job: JobChange | None = None
    worker: WorkerChange | None = None
    attempt: AttemptChange | None = None
    new_attempt: Attempt | None = None
    events: tuple[DomainEvent, ...] = ()
    # A provider's or a schedule's change stands alone.
    provider: ProviderChange | None = None
    schedule: ScheduleChange | None = None

    def __post_init__(self) -> None:
        guards = (self.job, self.worker, self.provider, self.schedule)
        assert any(g is not None for g in guards), "a transition needs a guard"
        alone = (self.provider, self.schedule)
        assert all(g is None for g in alone) or sum(g is not None for g in guards) == 1


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``apply`` did: ``won`` if the guard held and everything was written."""

    won: bool
    job: Job | None = None  # the job as written, where the store has it (a start)
    # Whether a job runs after this one, read back by the write under the job's row
    # lock (None where the write does not say): exact even against a dependent being
    # added at the same moment, which sets the flag under the same lock.
    has_dependents: bool | None = None

    def __bool__(self) -> bool:
        return self.won


# Written as one statement on PostgreSQL: the store needs no transaction around them.
ONE_STATEMENT = frozenset({Kind.QUEUE, Kind.START, Kind.FINISH})

_NO_RUN = {"worker_id": None, "queued_at": None, "started_at": None, "deadline_at": None}
# One frozenset per state, built once: the guards of the per-job path reuse them.
_ONLY = {state: frozenset({state}) for state in JobState}
# DEGRADED too: a message delivered is proof the broker is back, and the claim must count
# the job on the worker's row.
_TAKES_WORK = frozenset(
    {WorkerState.READY, WorkerState.BUSY, WorkerState.REGISTERED, WorkerState.DEGRADED}
)


# --- jobs --------------------------------------------------------------------------------


def queue(
    job_id: UUID,
    attempt: int,
    *,
    task_id: str,
    queue: str,
    now: datetime,
    correlation_id: str | None = None,
    reason: str = "",
) -> Transition:
    """PENDING -> QUEUED at ``attempt``, once the broker took the message (from what the
    publisher knew: no need to read the job)."""
    return Transition(
        Kind.QUEUE,
        job=JobChange(
            job_id,
            _ONLY[JobState.PENDING],
            {
                "state": JobState.QUEUED,
                "queued_at": now,
                "next_attempt_at": None,
                "updated_at": now,
            },
            attempt=attempt,
        ),
        new_attempt=Attempt(job_id, attempt, AttemptState.QUEUED, task_id=task_id),
        events=(
            job_event_for(
                job_id,
                correlation_id,
                EventType.JOB_QUEUED,
                actor=Actor.DISPATCHER,
                now=now,
                new_state=JobState.QUEUED,
                old_state=JobState.PENDING,  # the only state a job is queued from
                provider=provider_of_queue(queue),
                queue=queue,
                attempt=attempt,
                task_id=task_id,
                selection=reason or None,
            ),
        ),
    )


def start(
    job_id: UUID, attempt: int, *, worker_id: UUID, task_id: str, now: datetime
) -> Transition:
    """QUEUED -> RUNNING at ``attempt`` on ``worker_id``, which becomes BUSY. Nothing is
    read first: the store sets the deadline from the job's timeout and gives the event
    the job's correlation id."""
    return Transition(
        Kind.START,
        job=JobChange(
            job_id,
            _ONLY[JobState.QUEUED],
            {
                "state": JobState.RUNNING,
                "worker_id": worker_id,
                "started_at": now,
                "updated_at": now,
            },
            attempt=attempt,
        ),
        attempt=AttemptChange(
            job_id,
            attempt,
            {
                "state": AttemptState.RUNNING,
                "worker_id": worker_id,
                "started_at": now,
                "task_id": task_id,
            },
        ),
        worker=WorkerChange(worker_id, _TAKES_WORK, {"updated_at": now}, count=WorkerCount.BUSY),
        events=(
            job_event_for(
                job_id,
                None,  # the store writes the job's own
                EventType.JOB_STARTED,
                actor=Actor.worker(worker_id),
                now=now,
                new_state=JobState.RUNNING,
                old_state=JobState.QUEUED,  # the only state a job starts from
                worker_id=worker_id,
                attempt=attempt,
            ),
        ),
    )


_END_EVENT = {
    JobState.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobState.FAILED: EventType.JOB_FAILED,
    JobState.TIMED_OUT: EventType.JOB_TIMED_OUT,
    JobState.CANCELLED: EventType.JOB_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended, as its worker measured it."""

    state: JobState  # the job's terminal state, were this attempt its last
    reason: FailureReason | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def failure_reason(self) -> str | None:
        return str(self.reason) if self.reason else None

    @property
    def attempt_state(self) -> AttemptState:
        return AttemptState(str(self.state))


def finish(job: Job, *, worker_id: UUID, ending: Ending, now: datetime) -> Transition:
    """RUNNING on ``worker_id`` at the job's attempt -> the ending's terminal state; the
    attempt ends too, and the worker counts one job done."""
    return _attempt_over(
        Kind.FINISH,
        job,
        worker_id,
        ending,
        now,
        {
            "state": ending.state,
            "exit_code": ending.exit_code,
            "failure_reason": ending.failure_reason,
            "error": ending.error,
            "finished_at": now,
            "updated_at": now,
        },
        job_event(
            job,
            _END_EVENT[ending.state],
            actor=Actor.worker(worker_id),
            now=now,
            new_state=ending.state,
            old_state=JobState.RUNNING,
            attempt=job.attempt,
            exit_code=ending.exit_code,
            signal=ending.signal,
            reason=ending.failure_reason,
            duration_ms=ending.duration_ms,
            error=ending.error,
        ),
    )


def retry(job: Job, *, worker_id: UUID, ending: Ending, due: datetime, now: datetime) -> Transition:
    """A failed attempt with attempts left: RUNNING -> PENDING as attempt n+1, due at
    ``due``; attempt n ends, and the worker counts one job done."""
    return _attempt_over(
        Kind.RETRY,
        job,
        worker_id,
        ending,
        now,
        _next_attempt(job, due=due, now=now, exit_code=ending.exit_code),
        job_event(
            job,
            EventType.JOB_RETRY_SCHEDULED,
            actor=Actor.worker(worker_id),
            now=now,
            new_state=JobState.PENDING,
            attempt=job.attempt + 1,
            failed_attempt=job.attempt,
            next_attempt_at=due,
            exit_code=ending.exit_code,
            reason=ending.failure_reason,
        ),
    )


def _attempt_over(
    kind: Kind,
    job: Job,
    worker_id: UUID,
    ending: Ending,
    now: datetime,
    changes: Mapping[str, Any],
    event: DomainEvent,
) -> Transition:
    """The job, RUNNING at its attempt on ``worker_id``, gets ``changes`` and ``event``;
    the attempt ends as ``ending`` says, and the worker counts one job done."""
    return Transition(
        kind,
        job=JobChange(
            job.id, _ONLY[JobState.RUNNING], changes, attempt=job.attempt, worker_id=worker_id
        ),
        attempt=_attempt_ended(job, ending, now),
        worker=_job_done(worker_id, now),
        events=(event,),
    )


def _next_attempt(job: Job, *, due: datetime, now: datetime, **more: Any) -> dict[str, Any]:
    """The changes that reopen a job as its next attempt, due at ``due``: the one way a
    job goes back to PENDING. The old attempt's row is left to the caller."""
    return {
        "state": JobState.PENDING,
        "attempt": job.attempt + 1,
        "next_attempt_at": due,
        **_NO_RUN,
        **more,
        "updated_at": now,
    }


def _job_done(worker_id: UUID, now: datetime) -> WorkerChange:
    return WorkerChange(worker_id, LIVE_WORKER_STATES, {"updated_at": now}, count=WorkerCount.DONE)


def _attempt_ended(job: Job, ending: Ending, now: datetime) -> AttemptChange:
    return AttemptChange(
        job.id,
        job.attempt,
        {
            "state": ending.attempt_state,
            "finished_at": now,
            "exit_code": ending.exit_code,
            "signal": ending.signal,
            "error": ending.error,
        },
    )


def reopen(job: Job, *, actor: str, now: datetime) -> Transition:
    """A manual retry: FAILED, TIMED_OUT or CANCELLED -> PENDING as the next attempt, due
    now, with a fresh retry budget. The earlier attempts stay as they were."""
    return Transition(
        Kind.REOPEN,
        job=JobChange(
            job.id,
            _ONLY[job.state],
            _next_attempt(
                job,
                due=now,
                now=now,
                max_attempts=job.max_attempts + job.spec.max_attempts,
                exit_code=None,
                failure_reason=None,
                error=None,
                cancel_requested_at=None,
                finished_at=None,
                # A job cancelled while it waited (dependency_failed) runs now: retrying
                # it is the operator's decision to run it anyway.
                held=False,
                hold_until=None,
            ),
            attempt=job.attempt,
            manual_retry=True,
        ),
        events=(
            job_event(
                job,
                EventType.JOB_RETRY_SCHEDULED,
                actor=actor,
                now=now,
                new_state=JobState.PENDING,
                attempt=job.attempt + 1,
                next_attempt_at=now,
                manual=True,
            ),
        ),
    )


def requeue_lost(job: Job, *, worker: Worker, now: datetime) -> Transition:
    """RUNNING on a LOST worker -> PENDING as the next attempt, due now; the attempt is LOST."""
    return Transition(
        Kind.REQUEUE_LOST,
        job=JobChange(
            job.id,
            _ONLY[JobState.RUNNING],
            _next_attempt(job, due=now, now=now),
            attempt=job.attempt,
        ),
        attempt=_attempt_lost(job, worker, now),
        events=(
            job_event(
                job,
                EventType.JOB_REQUEUED,
                actor=Actor.REAPER,
                now=now,
                new_state=JobState.PENDING,
                reason="worker_lost",
                lost_worker_id=worker.id,
                attempt=job.attempt + 1,
            ),
        ),
    )


def fail_lost(job: Job, *, worker: Worker, now: datetime) -> Transition:
    """RUNNING on a LOST worker, lost too often -> FAILED (worker_lost); the attempt is LOST."""
    return fail(
        job,
        reason=FailureReason.WORKER_LOST,
        actor=Actor.REAPER,
        now=now,
        attempt=_attempt_lost(job, worker, now),
        lost_worker_id=worker.id,
    )


def _attempt_lost(job: Job, worker: Worker, now: datetime) -> AttemptChange:
    return AttemptChange(
        job.id,
        job.attempt,
        {"state": AttemptState.LOST, "finished_at": now, "error": f"worker {worker.id} lost"},
    )


def fail(
    job: Job,
    *,
    reason: FailureReason,
    actor: str,
    now: datetime,
    error: str | None = None,
    attempt: AttemptChange | None = None,
    **details: Any,
) -> Transition:
    """A job that can no longer run -> FAILED for ``reason`` (from the state it was read
    in, at its attempt). A queued or running attempt fails with it, unless ``attempt``
    says otherwise. ``details`` go into the JobFailed event."""
    changes: dict[str, Any] = {"state": JobState.FAILED, "failure_reason": str(reason)}
    if error is not None:
        changes["error"] = error
    if attempt is None and job.state in (JobState.QUEUED, JobState.RUNNING):
        attempt = AttemptChange(
            job.id, job.attempt, {"state": AttemptState.FAILED, "finished_at": now, "error": error}
        )
    extra: dict[str, Any] = {"error": error} if error is not None else {}
    return Transition(
        Kind.FAIL,
        job=JobChange(
            job.id,
            _ONLY[job.state],
            {**changes, "finished_at": now, "updated_at": now},
            attempt=job.attempt,
        ),
        attempt=attempt,
        events=(
            job_event(
                job,
                EventType.JOB_FAILED,
                actor=actor,
                now=now,
                new_state=JobState.FAILED,
                reason=str(reason),
                attempt=job.attempt,
                **extra,
                **details,
            ),
        ),
    )


def time_out(job: Job, *, now: datetime, error: str) -> Transition:
    """RUNNING past its deadline, its worker gone -> TIMED_OUT, and its attempt too."""
    return Transition(
        Kind.TIME_OUT,
        job=JobChange(
            job.id,
            _ONLY[JobState.RUNNING],
            {
                "state": JobState.TIMED_OUT,
                "failure_reason": str(FailureReason.TIMEOUT),
                "finished_at": now,
                "updated_at": now,
            },
            attempt=job.attempt,
        ),
        attempt=AttemptChange(
            job.id,
            job.attempt,
            {"state": AttemptState.TIMED_OUT, "finished_at": now, "error": error},
        ),
        events=(
            job_event(
                job,
                EventType.JOB_TIMED_OUT,
                actor=Actor.REAPER,
                now=now,
                new_state=JobState.TIMED_OUT,
                attempt=job.attempt,
                reason=str(FailureReason.TIMEOUT),
            ),
        ),
    )


def cancel(
    job: Job,
    *,
    actor: str,
    now: datetime,
    reason: FailureReason = FailureReason.CANCELLED,
    **details: Any,
) -> Transition:
    """PENDING or QUEUED -> CANCELLED at once (a queued attempt too). ``reason`` other
    than cancelled (dependency_failed) is hodei's own decision: no cancel request."""
    requested = (
        (job_event(job, EventType.JOB_CANCEL_REQUESTED, actor=actor, now=now),)
        if reason is FailureReason.CANCELLED
        else ()
    )
    return Transition(
        Kind.CANCEL,
        job=JobChange(
            job.id,
            _ONLY[job.state],
            {
                "state": JobState.CANCELLED,
                "cancel_requested_at": now,
                "failure_reason": str(reason),
                "finished_at": now,
                "updated_at": now,
            },
            attempt=job.attempt,
        ),
        attempt=(
            AttemptChange(
                job.id, job.attempt, {"state": AttemptState.CANCELLED, "finished_at": now}
            )
            if job.state is JobState.QUEUED
            else None
        ),
        events=(
            *requested,
            job_event(
                job,
                EventType.JOB_CANCELLED,
                actor=actor,
                now=now,
                new_state=JobState.CANCELLED,
                attempt=job.attempt,
                reason=str(reason),
                **details,
            ),
        ),
    )


def request_cancel(job: Job, *, actor: str, now: datetime) -> Transition:
    """A RUNNING job gets ``cancel_requested_at``, which its runner honours (SIGTERM,
    grace, SIGKILL); it ends CANCELLED when its attempt finishes."""
    return Transition(
        Kind.REQUEST_CANCEL,
        job=JobChange(
            job.id,
            _ONLY[JobState.RUNNING],
            {"cancel_requested_at": now, "updated_at": now},
        ),
        events=(job_event(job, EventType.JOB_CANCEL_REQUESTED, actor=actor, now=now),),
    )


def assign(job: Job, *, provider_id: UUID, queue: str, now: datetime) -> Transition:
    """A PENDING job no provider could take at submit gets one (no state change)."""
    return Transition(
        Kind.ASSIGN,
        job=JobChange(
            job.id,
            _ONLY[JobState.PENDING],
            {"provider_id": provider_id, "queue": queue, "updated_at": now},
            attempt=job.attempt,
        ),
    )


def republish(job: Job, *, reason: str, now: datetime) -> Transition:
    """A QUEUED job whose message was most likely lost: its queue clock restarts (so the
    next pass does not publish it yet again), with a JobRepublished event."""
    return Transition(
        Kind.REPUBLISH,
        job=JobChange(
            job.id,
            _ONLY[JobState.QUEUED],
            {"queued_at": now, "updated_at": now},
            attempt=job.attempt,
        ),
        events=(
            job_event(
                job,
                EventType.JOB_REPUBLISHED,
                actor=Actor.DISPATCHER,
                now=now,
                attempt=job.attempt,
                reason=reason,
            ),
        ),
    )


def release(job: Job, *, now: datetime, actor: str = Actor.DISPATCHER) -> Transition:
    """A held PENDING job whose gates are open: no longer held, so it is published (and
    dispatch_pending may publish it). Guarded on ``held``: two releasers release once."""
    return Transition(
        Kind.RELEASE,
        job=JobChange(
            job.id,
            _ONLY[JobState.PENDING],
            {"held": False, "hold_until": None, "updated_at": now},
            attempt=job.attempt,
            held=True,
        ),
        events=(
            job_event(
                job,
                EventType.JOB_RELEASED,
                actor=actor,
                now=now,
                attempt=job.attempt,
                waited_s=round((now - job.created_at).total_seconds(), 3),
            ),
        ),
    )


def pass_due(job: Job, *, now: datetime) -> Transition:
    """A held job's due time has passed but another gate holds it: forget the due time,
    so the due-time scan does not find it again (``spec.run_at`` keeps it)."""
    return Transition(
        Kind.PASS_DUE,
        job=JobChange(
            job.id,
            _ONLY[JobState.PENDING],
            {"hold_until": None, "updated_at": now},
            attempt=job.attempt,
            held=True,
        ),
    )


# --- workers -----------------------------------------------------------------------------


def register(worker: Worker, *, infra_ref: str | None, now: datetime) -> Transition:
    """PROVISIONING -> READY (by way of REGISTERED, in the events). The provider's handle
    (container id, pod name) wins over the worker's own view (a pid inside that
    container), which only matters when there is none."""
    provider_ref = None if worker.infra_ref == LAUNCHING_REF else worker.infra_ref
    actor = Actor.worker(worker.id)
    return Transition(
        Kind.REGISTER,
        worker=WorkerChange(
            worker.id,
            frozenset({WorkerState.PROVISIONING}),
            {
                "state": WorkerState.READY,
                "registered_at": now,
                "last_heartbeat": now,
                "infra_ref": provider_ref or infra_ref,
                "updated_at": now,
            },
        ),
        events=(
            worker_event(
                worker,
                EventType.WORKER_REGISTERED,
                actor=actor,
                now=now,
                new_state=WorkerState.REGISTERED,
                infra_ref=infra_ref,
            ),
            worker_event(
                _as(worker, WorkerState.REGISTERED),
                EventType.WORKER_READY,
                actor=actor,
                now=now,
                new_state=WorkerState.READY,
            ),
        ),
    )


def _as(worker: Worker, state: WorkerState) -> Worker:
    return replace(worker, state=state)


def heartbeat(
    worker_id: UUID,
    *,
    now: datetime,
    reported_jobs: tuple[UUID, ...] | None = None,
    pending_outcomes: int | None = None,
) -> Transition:
    """A registered worker is alive (no state change, no event); with ``reported_jobs``,
    also what it holds: the jobs it runs or has an outcome of still to write."""
    changes: dict[str, Any] = {"last_heartbeat": now, "updated_at": now}
    if reported_jobs is not None:
        changes["reported_jobs"] = tuple(reported_jobs)
        changes["pending_outcomes"] = pending_outcomes or 0
    return Transition(
        Kind.HEARTBEAT, worker=WorkerChange(worker_id, REGISTERED_WORKER_STATES, changes)
    )


def launched(worker_id: UUID, *, infra_ref: str, now: datetime) -> Transition:
    """The provider started the worker's process, container or pod: its handle."""
    return Transition(
        Kind.LAUNCHED,
        worker=WorkerChange(
            worker_id, LIVE_WORKER_STATES, {"infra_ref": infra_ref, "updated_at": now}
        ),
    )


def touch(worker_id: UUID, *, now: datetime) -> Transition:
    """Write the worker's row, whatever its state: concurrent writers queue behind it
    until this transaction ends."""
    return Transition(
        Kind.TOUCH,
        worker=WorkerChange(worker_id, frozenset(WorkerState), {"updated_at": now}),
    )


def drain(worker: Worker, *, actor: str, now: datetime) -> Transition:
    """A live worker -> DRAINING: it finishes its current job and exits."""
    return _worker_to(
        Kind.DRAIN,
        worker,
        LIVE_WORKER_STATES,
        WorkerState.DRAINING,
        EventType.WORKER_DRAINING,
        actor=actor,
        now=now,
    )


def degrade(worker: Worker, *, reason: str, now: datetime) -> Transition:
    """A worker that takes work -> DEGRADED: it lost its broker and Celery reconnects.
    It is no READY capacity meanwhile; a job it runs goes on."""
    return _worker_to(
        Kind.DEGRADE,
        worker,
        frozenset({WorkerState.READY, WorkerState.BUSY, WorkerState.REGISTERED}),
        WorkerState.DEGRADED,
        EventType.WORKER_DEGRADED,
        actor=Actor.worker(worker.id),
        now=now,
        reason=reason,
    )


def reconnect(worker: Worker, *, down_s: float, now: datetime) -> Transition:
    """DEGRADED -> READY, or BUSY if it runs a job: it reaches its broker again. The
    store decides which from the worker's running-job count as it writes."""
    return Transition(
        Kind.RECONNECT,
        worker=WorkerChange(
            worker.id,
            frozenset({WorkerState.DEGRADED}),
            {"updated_at": now},
            count=WorkerCount.FOLLOW,
        ),
        events=(
            worker_event(
                worker,
                EventType.WORKER_RECONNECTED,
                actor=Actor.worker(worker.id),
                now=now,
                down_s=round(down_s, 3),
            ),
        ),
    )


def lose(worker: Worker, *, silent_since: datetime, reason: str, now: datetime) -> Transition:
    """A registered worker with no sign of life since ``silent_since`` -> LOST."""
    return _worker_to(
        Kind.LOSE,
        worker,
        REGISTERED_WORKER_STATES,
        WorkerState.LOST,
        EventType.WORKER_LOST,
        actor=Actor.REAPER,
        now=now,
        changes=_ended(reason, now, current_job_id=None),
        silent_since=silent_since,
        last_heartbeat=worker.last_heartbeat,
        reason=reason,
    )


def terminate(worker: Worker, *, reason: str, actor: str, now: datetime) -> Transition:
    """A live worker -> TERMINATED: it exits, or its provider is removed."""
    return _worker_to(
        Kind.TERMINATE,
        worker,
        LIVE_WORKER_STATES,
        WorkerState.TERMINATED,
        EventType.WORKER_TERMINATED,
        actor=actor,
        now=now,
        changes=_ended(reason, now, current_job_id=None),
        reason=reason,
    )


def provision_failed(
    worker: Worker,
    *,
    reason: str,
    actor: str,
    now: datetime,
    cause: DomainEvent | None = None,
) -> Transition:
    """A worker that never registered -> PROVISION_FAILED, its event after ``cause``'s."""
    return _worker_to(
        Kind.PROVISION_FAILED,
        worker,
        frozenset({WorkerState.PROVISIONING}),
        WorkerState.PROVISION_FAILED,
        EventType.WORKER_PROVISION_FAILED,
        actor=actor,
        now=now,
        changes=_ended(reason, now),
        cause=cause,
        reason=reason,
    )


def _worker_to(
    kind: Kind,
    worker: Worker,
    from_states: frozenset[WorkerState],
    state: WorkerState,
    event: EventType,
    *,
    actor: str,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
    silent_since: datetime | None = None,
    cause: DomainEvent | None = None,
    **payload: Any,
) -> Transition:
    """``worker`` from one of ``from_states`` to ``state`` (and ``changes``), with one
    ``event`` (``payload``), after ``cause``'s if given."""
    return Transition(
        kind,
        worker=WorkerChange(
            worker.id,
            from_states,
            {"state": state, **(changes or {}), "updated_at": now},
            silent_since=silent_since,
        ),
        events=(
            *([cause] if cause else []),
            worker_event(worker, event, actor=actor, now=now, new_state=state, **payload),
        ),
    )


def _ended(reason: str, now: datetime, **more: Any) -> dict[str, Any]:
    """The columns of a worker's end (LOST, TERMINATED, PROVISION_FAILED)."""
    return {"termination_reason": reason, "terminated_at": now, **more}


def after(job: Job, transition: Transition, applied: Applied | None = None) -> Job:
    """``job`` as ``transition`` leaves it (what the store wrote, without reading it);
    with ``applied``, also what the write read back (``has_dependents``)."""
    assert transition.job is not None and transition.job.job_id == job.id
    if applied is None or applied.has_dependents is None:
        return replace(job, **transition.job.changes)
    return replace(job, **transition.job.changes, has_dependents=applied.has_dependents)


def set_provider_status(
    provider: Provider, status: ProviderStatus, *, actor: str, now: datetime
) -> Transition:
    """ACTIVE, DISABLED or DRAINING, if nobody changed the status since ``provider`` was
    read."""
    return Transition(
        Kind.PROVIDER_STATUS,
        provider=ProviderChange(
            provider.id, {"status": status, "updated_at": now}, status=provider.status
        ),
        events=(
            provider_event(
                provider,
                EventType.PROVIDER_STATUS_CHANGED,
                actor,
                now,
                old_status=str(provider.status),
                new_status=str(status),
            ),
        ),
    )


def record_health(
    provider: Provider,
    health: ProviderHealth,
    message: str,
    *,
    now: datetime,
    **payload: Any,
) -> Transition:
    """A health check's result. A change of health, or a breaker's transition (given as
    ``payload``), writes ProviderHealthChanged; the same health only its check time."""
    changed = provider.health is not health or bool(payload)
    event = provider_event(
        provider,
        EventType.PROVIDER_HEALTH_CHANGED,
        Actor.HEALTH,
        now,
        old=str(provider.health),
        new=str(health),
        message=message,
        **payload,
    )
    return Transition(
        Kind.PROVIDER_HEALTH,
        provider=ProviderChange(
            provider.id,
            {"health": health, "health_message": message or None, "health_checked_at": now},
        ),
        events=(event,) if changed else (),
    )


def update_provider(
    provider: Provider,
    changes: Mapping[str, Any],
    *,
    shown: Mapping[str, Any],
    actor: str,
    now: datetime,
) -> Transition:
    """New settings for a provider; ProviderUpdated lists them as ``shown`` (secrets
    masked by the caller)."""
    return Transition(
        Kind.PROVIDER_UPDATE,
        provider=ProviderChange(provider.id, {**changes, "updated_at": now}),
        events=(provider_event(provider, EventType.PROVIDER_UPDATED, actor, now, changes=shown),),
    )


def pause_schedule(schedule: Schedule, *, actor: str, now: datetime) -> Transition:
    """An active schedule stops firing (no next tick until it resumes)."""
    return Transition(
        Kind.SCHEDULE_PAUSE,
        schedule=ScheduleChange(
            schedule.id, False, {"paused": True, "next_fire_at": None, "updated_at": now}
        ),
        events=(schedule_event(schedule, EventType.SCHEDULE_PAUSED, actor=actor, now=now),),
    )


def resume_schedule(
    schedule: Schedule, *, next_fire_at: datetime | None, actor: str, now: datetime
) -> Transition:
    """A paused schedule fires again from ``next_fire_at`` (ticks while paused are not
    caught up)."""
    return Transition(
        Kind.SCHEDULE_RESUME,
        schedule=ScheduleChange(
            schedule.id,
            True,
            {"paused": False, "next_fire_at": next_fire_at, "updated_at": now},
        ),
        events=(
            schedule_event(
                schedule,
                EventType.SCHEDULE_RESUMED,
                actor=actor,
                now=now,
                next_fire_at=next_fire_at,
            ),
        ),
    )
