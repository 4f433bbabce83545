"""What users do to existing jobs: cancel and retry."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from hodei.domain.events import EventType
from hodei.domain.records import Job
from hodei.domain.states import AttemptState, FailureReason, JobState, ensure_transition
from hodei.errors import JobNotCancellable, JobNotFound, JobNotRetryable
from hodei.services.attempts import reopen_as_next_attempt
from hodei.services.dispatch import publish_jobs
from hodei.services.ports import Clock, Store, TaskPublisher
from hodei.services.timeline import job_event


def cancel_job(store: Store, clock: Clock, job_id: UUID, *, actor: str) -> Job:
    """Cancel a job: PENDING or QUEUED ends CANCELLED at once; RUNNING gets
    cancel_requested_at, which its runner honours (SIGTERM, grace, SIGKILL)."""
    now = clock.now()
    with store.transaction() as tx:
        job = tx.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.is_terminal:
            raise JobNotCancellable(f"job {job_id} is already {job.state}")
        requested = job_event(job, EventType.JOB_CANCEL_REQUESTED, actor=actor, now=now)
        if job.state is JobState.RUNNING:
            if job.cancel_requested_at is not None:
                return job
            tx.jobs.compare_and_set(
                job_id, states=[JobState.RUNNING], cancel_requested_at=now, updated_at=now
            )
            tx.events.add(requested)
            return replace(job, cancel_requested_at=now)
        won = tx.jobs.compare_and_set(
            job_id,
            states=[job.state],
            expected_attempt=job.attempt,
            state=JobState.CANCELLED,
            cancel_requested_at=now,
            failure_reason=str(FailureReason.CANCELLED),
            finished_at=now,
            updated_at=now,
        )
        if not won:
            # It moved (typically: claimed) between our read and write; try again.
            raise JobNotCancellable(f"job {job_id} changed state; cancel again")
        if job.state is JobState.QUEUED:
            tx.attempts.update(job_id, job.attempt, state=AttemptState.CANCELLED, finished_at=now)
        tx.events.add(
            requested,
            job_event(
                job,
                EventType.JOB_CANCELLED,
                actor=actor,
                now=now,
                new_state=JobState.CANCELLED,
                attempt=job.attempt,
                reason=str(FailureReason.CANCELLED),
            ),
        )
    return replace(job, state=JobState.CANCELLED, finished_at=now)


def retry_job(
    store: Store, clock: Clock, publisher: TaskPublisher, job_id: UUID, *, actor: str
) -> Job:
    """Run a failed, timed-out or cancelled job again, as a new attempt with a fresh
    retry budget. The earlier attempts stay as they were."""
    now = clock.now()
    with store.transaction() as tx:
        job = tx.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.state not in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED):
            raise JobNotRetryable(
                f"job {job_id} is {job.state}; only failed, timed-out or "
                "cancelled jobs can be retried"
            )
        ensure_transition(job.state, JobState.PENDING, manual_retry=True)
        retried = reopen_as_next_attempt(
            tx,
            job,
            from_states=[job.state],
            due=now,
            now=now,
            max_attempts=job.max_attempts + job.spec.max_attempts,
            exit_code=None,
            failure_reason=None,
            error=None,
            cancel_requested_at=None,
            finished_at=None,
        )
        if retried is None:
            raise JobNotRetryable(f"job {job_id} changed state; retry again")
        tx.events.add(
            job_event(
                job,
                EventType.JOB_RETRY_SCHEDULED,
                actor=actor,
                now=now,
                new_state=JobState.PENDING,
                attempt=retried.attempt,
                next_attempt_at=now,
                manual=True,
            )
        )
    publish_jobs(store, clock, publisher, [retried], {job_id: "manual retry"})
    return retried
