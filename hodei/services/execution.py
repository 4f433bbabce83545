"""Running an attempt: claim it (exactly once), then record how it ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain.events import Actor, DomainEvent, EventType
from hodei.domain.records import Job
from hodei.domain.states import AttemptState, FailureReason, JobState
from hodei.services.attempts import reopen_as_next_attempt
from hodei.services.dispatch import mark_queued
from hodei.services.ports import Clock, Store, Transaction
from hodei.services.timeline import job_event, job_event_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """Whether this delivery won the right to run the attempt."""

    won: bool
    reason: str
    job: Job | None = None


@dataclass(frozen=True)
class Outcome:
    """How a command ended (what the runner measured)."""

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
    with store.single_write() as tx:
        started = _start(tx, clock.now(), job_id, attempt, worker_id, task_id)
    if started is not None:
        return Claim(True, "claimed", started)
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
        started = _start(tx, clock.now(), job_id, attempt, worker_id, task_id)
        if started is not None:
            return Claim(True, "claimed", started)
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


def _start(
    tx: Transaction, now: datetime, job_id: UUID, attempt: int, worker_id: UUID, task_id: str
) -> Job | None:
    return tx.runs.start(
        job_id,
        attempt,
        worker_id=worker_id,
        task_id=task_id,
        now=now,
        event=job_event_for(
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
    )


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
        with store.single_write() as tx:
            finished = _finish_final(tx, now, job, worker_id, outcome, verdict)
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


def _finish_final(
    tx: Transaction, now: datetime, job: Job, worker_id: UUID, outcome: Outcome, verdict: _Verdict
) -> Job | None:
    """The job, its attempt, the worker and the event in one guarded write; no read."""
    failure_reason = verdict.failure_reason
    finished = tx.runs.finish(
        job.id,
        job.attempt,
        worker_id=worker_id,
        now=now,
        state=verdict.state,
        attempt_state=verdict.attempt_state,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        failure_reason=failure_reason,
        error=outcome.error,
        event=_end_event(job, verdict, outcome, worker_id, now),
    )
    if not finished:
        return None
    return replace(
        job,
        state=verdict.state,
        exit_code=outcome.exit_code,
        failure_reason=failure_reason,
        error=outcome.error,
        finished_at=now,
        updated_at=now,
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
        return _finish_final(tx, now, current, worker_id, outcome, verdict)
    retried = _schedule_retry(tx, now, current, outcome, verdict, worker_id)
    tx.attempts.update(
        job.id,
        job.attempt,
        state=verdict.attempt_state,
        finished_at=now,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        error=outcome.error,
    )
    tx.workers.job_done(worker_id, now)
    return retried


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


def _end_event(
    job: Job, verdict: _Verdict, outcome: Outcome, worker_id: UUID, now: datetime
) -> DomainEvent:
    return job_event(
        job,
        verdict.event,
        actor=Actor.worker(worker_id),
        now=now,
        new_state=verdict.state,
        old_state=JobState.RUNNING,
        attempt=job.attempt,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        reason=verdict.failure_reason,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
    )


def _schedule_retry(
    tx: Transaction,
    now: datetime,
    job: Job,
    outcome: Outcome,
    verdict: _Verdict,
    worker_id: UUID,
) -> Job:
    due = now + timedelta(seconds=job.spec.retry.delay_s(job.attempt))
    retried = reopen_as_next_attempt(
        tx,
        job,
        from_states=[JobState.RUNNING],
        due=due,
        now=now,
        exit_code=outcome.exit_code,
    )
    assert retried is not None, "the caller read this job as RUNNING in this transaction"
    next_attempt = retried.attempt
    tx.events.add(
        job_event(
            job,
            EventType.JOB_RETRY_SCHEDULED,
            actor=Actor.worker(worker_id),
            now=now,
            new_state=JobState.PENDING,
            attempt=next_attempt,
            failed_attempt=job.attempt,
            next_attempt_at=due,
            exit_code=outcome.exit_code,
            reason=verdict.failure_reason,
        )
    )
    return retried
