"""Running an attempt: claim it (exactly once), then record how it ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.events import EventType
from hodei.domain.records import Job
from hodei.domain.states import AttemptState, FailureReason, JobState
from hodei.domain.transitions import Transition
from hodei.services.jobs.dispatch import mark_queued
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """Whether this delivery won the right to run the attempt."""

    won: bool
    reason: str
    job: Job | None = None


@dataclass(frozen=True)
class Outcome:
    """How a command ended, as ``runtime.runner`` measured it; ``error`` is set (with exit
    code 127) when it could not start."""

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    duration_ms: int = 0
    error: str | None = None

    def summary(self) -> str:
        """A few words on how it ended: "exit 0", "timed out", "signal 9", ..."""
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return "timed out"
        if self.error is not None:
            return f"error: {self.error}"
        if self.signal is not None:
            return f"signal {self.signal}"
        return f"exit {self.exit_code}"

    @property
    def succeeded(self) -> bool:
        """Whether :func:`finish_attempt` records this ending as a success."""
        return _verdict(self).state is JobState.SUCCEEDED


def claim_attempt(
    store: Store, clock: Clock, *, job_id: UUID, attempt: int, worker_id: UUID, task_id: str
) -> Claim:
    """QUEUED -> RUNNING for ``attempt``, conditionally: a duplicate delivery, a message
    for an old attempt, or one for a cancelled job loses and must not run."""
    # The usual case, a QUEUED job, is one guarded write and nothing else.
    started = store.apply(_start(clock.now(), job_id, attempt, worker_id, task_id))
    if started:
        return Claim(True, "claimed", started.job)
    # Lost: read the job to say why, or to confirm a publish not confirmed yet.
    with store.transaction() as tx:
        job = tx.jobs.get(job_id)
        refusal = _refusal(job, attempt, clock.now())
        if refusal is not None:
            return Claim(False, refusal, job)
        assert job is not None
        if job.state is JobState.PENDING:
            # The worker got the message before the publisher confirmed it: confirm here,
            # so the timeline still reads JobQueued before JobStarted.
            mark_queued(tx, clock, job, task_id)
        # Try again: the job is QUEUED now, whether confirmed just above or by the
        # publisher between the first try and the read.
        started = tx.apply(_start(clock.now(), job_id, attempt, worker_id, task_id))
        if started:
            return Claim(True, "claimed", started.job)
    return Claim(False, "another delivery claimed this attempt first", job)


def _refusal(job: Job | None, attempt: int, now: datetime) -> str | None:
    if job is None:
        return "no such job"
    if job.attempt != attempt:
        return f"stale message for attempt {attempt}; the job is at attempt {job.attempt}"
    if job.state not in (JobState.PENDING, JobState.QUEUED):
        return f"the job is {job.state}"
    if job.next_attempt_at is not None and job.next_attempt_at > now:
        return "the attempt is not due yet"
    return None


def _start(now: datetime, job_id: UUID, attempt: int, worker_id: UUID, task_id: str) -> Transition:
    return transitions.start(job_id, attempt, worker_id=worker_id, task_id=task_id, now=now)


@dataclass(frozen=True)
class _Verdict:
    state: JobState
    event: EventType
    reason: FailureReason | None
    attempt_state: AttemptState

    @property
    def failure_reason(self) -> str | None:
        """The reason as stored and shown (None for a success)."""
        return str(self.reason) if self.reason else None


def finish_attempt(
    store: Store,
    clock: Clock,
    *,
    job: Job,
    worker_id: UUID,
    outcome: Outcome,
) -> Job | None:
    """Record the end of ``job``'s RUNNING attempt (``job`` as claimed): its terminal
    state, or a retry when the job has attempts left. Returns the job as it is now
    (None if the attempt was no longer this worker's to finish, e.g. the reaper
    requeued it)."""
    now = clock.now()
    verdict = _verdict(outcome)
    if verdict.reason in _MAY_RETRY:
        with store.transaction() as tx:
            finished = _finish_or_retry(tx, now, job, worker_id, outcome, verdict)
    else:
        # An ending that cannot retry is one guarded write and nothing else.
        final = _finish(now, job, worker_id, outcome, verdict)
        applied = store.apply(final)
        finished = transitions.after(job, final, applied) if applied else None
    if finished is None:
        logger.warning(
            "finish of job %s attempt %d ignored: no longer this worker's",
            job.id,
            job.attempt,
            extra={"job_id": str(job.id), "worker_id": str(worker_id)},
        )
    return finished


# Only these end in a retry while attempts remain; every other ending is final.
_MAY_RETRY = (FailureReason.NONZERO_EXIT, FailureReason.TIMEOUT)


def _finish(
    now: datetime, job: Job, worker_id: UUID, outcome: Outcome, verdict: _Verdict
) -> Transition:
    """The job, its attempt, the worker and the event in one guarded write; no read."""
    return transitions.finish(job, worker_id=worker_id, ending=_ending(outcome, verdict), now=now)


def _ending(outcome: Outcome, verdict: _Verdict) -> transitions.Ending:
    return transitions.Ending(
        verdict.state,
        verdict.reason,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
    )


def _finish_or_retry(
    tx: Transaction, now: datetime, job: Job, worker_id: UUID, outcome: Outcome, verdict: _Verdict
) -> Job | None:
    """A failure: schedule the next attempt if the job has some left, else end it."""
    current = tx.jobs.get(job.id)
    if (
        current is None
        or current.state is not JobState.RUNNING
        or current.attempt != job.attempt
        or current.worker_id != worker_id
    ):
        return None
    failures = 1 + sum(
        1
        for a in tx.attempts.search(job.id)
        if a.attempt_no != job.attempt and a.state in (AttemptState.FAILED, AttemptState.TIMED_OUT)
    )
    if failures >= current.max_attempts:
        change = _finish(now, current, worker_id, outcome, verdict)
    else:
        due = now + timedelta(seconds=current.spec.retry.delay_s(current.attempt))
        ending = _ending(outcome, verdict)
        change = transitions.retry(current, worker_id=worker_id, ending=ending, due=due, now=now)
    applied = tx.apply(change)
    return transitions.after(current, change, applied) if applied else None


def _verdict(outcome: Outcome) -> _Verdict:
    if outcome.cancelled:
        return _Verdict(
            JobState.CANCELLED,
            EventType.JOB_CANCELLED,
            FailureReason.CANCELLED,
            AttemptState.CANCELLED,
        )
    if outcome.timed_out:
        return _Verdict(
            JobState.TIMED_OUT,
            EventType.JOB_TIMED_OUT,
            FailureReason.TIMEOUT,
            AttemptState.TIMED_OUT,
        )
    if outcome.error is not None:
        return _Verdict(
            JobState.FAILED,
            EventType.JOB_FAILED,
            FailureReason.SPAWN_ERROR,
            AttemptState.FAILED,
        )
    if outcome.exit_code == 0:
        return _Verdict(JobState.SUCCEEDED, EventType.JOB_SUCCEEDED, None, AttemptState.SUCCEEDED)
    return _Verdict(
        JobState.FAILED, EventType.JOB_FAILED, FailureReason.NONZERO_EXIT, AttemptState.FAILED
    )
