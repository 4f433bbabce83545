"""Records for use-case tests, written straight into any Store (the fake or a real one)."""

from __future__ import annotations

import uuid

from hodei.domain.records import Job, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, WorkerState
from hodei.services.jobs.dispatch import Confirmation, confirm_queued
from hodei.services.ports.store import Store
from hodei.testing import FixedClock

QUEUE = "hodei.contract"


def waiting_job(
    store: Store,
    clock: FixedClock,
    *,
    max_attempts: int = 1,
    attempt: int = 1,
    correlation_id: str | None = None,
) -> Job:
    """A PENDING job of ``QUEUE`` at ``attempt``."""
    spec = JobSpec.create(["true"], name="c", max_attempts=max_attempts, timeout_s=60)
    now = clock.now()
    job = Job(
        uuid.uuid4(),
        "c",
        JobState.PENDING,
        spec,
        now,
        now,
        attempt=attempt,
        max_attempts=max_attempts,
        queue=QUEUE,
        correlation_id=correlation_id or f"corr-{uuid.uuid4().hex[:6]}",
    )
    with store.transaction() as tx:
        tx.jobs.add(job)
    return job


def ready_worker(store: Store, clock: FixedClock) -> Worker:
    now = clock.now()
    worker = Worker(
        uuid.uuid4(),
        "w",
        None,
        QUEUE,
        WorkerState.READY,
        now,
        now,
        registered_at=now,
        last_heartbeat=now,
    )
    with store.transaction() as tx:
        tx.workers.add(worker)
    return worker


def queued(store: Store, clock: FixedClock, job: Job) -> Job:
    """``job`` confirmed QUEUED (its attempt row and JobQueued event written)."""
    confirmation = Confirmation(job.id, job.attempt, "t-1", QUEUE, job.correlation_id)
    assert confirm_queued(store, clock, [confirmation]) == 1
    return job
