"""What users do to existing jobs: cancel and retry."""

from __future__ import annotations

from uuid import UUID

from hodei.domain import transitions
from hodei.domain.records import Job
from hodei.domain.states import JobState
from hodei.errors import JobNotCancellable, JobNotFound, JobNotRetryable
from hodei.services.jobs import gates
from hodei.services.jobs.dispatch import publish_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store


def cancel_job(
    store: Store,
    clock: Clock,
    job_id: UUID,
    *,
    actor: str,
    publisher: TaskPublisher | None = None,
) -> Job:
    """Cancel a job: PENDING or QUEUED ends CANCELLED at once; RUNNING gets
    cancel_requested_at, which its runner honours (SIGTERM, grace, SIGKILL). With a
    ``publisher``, the jobs that waited for it go on at once (its dependents end
    dependency_failed, the next job of its concurrency key is released)."""
    cancelled = _cancel(store, clock, job_id, actor)
    if publisher is not None and cancelled.is_terminal:
        gates.after_end(store, clock, publisher, [cancelled])
    return cancelled


def _cancel(store: Store, clock: Clock, job_id: UUID, actor: str) -> Job:
    now = clock.now()
    with store.transaction() as tx:
        job = tx.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.is_terminal:
            raise JobNotCancellable(f"job {job_id} is already {job.state}")
        if job.state is JobState.RUNNING:
            if job.cancel_requested_at is not None:
                return job
            change = transitions.request_cancel(job, actor=actor, now=now)
        else:
            change = transitions.cancel(job, actor=actor, now=now)
        applied = tx.apply(change)
        if not applied:
            # It moved (typically: claimed) between our read and write; try again.
            raise JobNotCancellable(f"job {job_id} changed state; cancel again")
    return transitions.after(job, change, applied)


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
        change = transitions.reopen(job, actor=actor, now=now)
        if not tx.apply(change):
            raise JobNotRetryable(f"job {job_id} changed state; retry again")
        retried = transitions.after(job, change)
    publish_jobs(store, clock, publisher, [retried], {job_id: "manual retry"})
    return retried
