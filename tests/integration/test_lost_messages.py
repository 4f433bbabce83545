"""A message lost between delivery and claim is published again; never run twice."""

from __future__ import annotations

import pytest

from hodei import JobSpec, JobState
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.services.fleet.workers import drain_worker
from hodei.services.jobs.dispatch import republish_stranded
from hodei.services.jobs.submission import submit_jobs
from tests.support import job_events

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_queued_job_whose_message_vanished_runs_once(pg_client: Client) -> None:
    import redis

    c = pg_client.container
    # Queued while no worker runs (the service does not provision, the SDK would)...
    [stranded] = submit_jobs(
        c.store, c.clock, c.publisher, [JobSpec.create("echo once")], actor="sdk:test"
    )
    assert pg_client.get(stranded.job.id).state is JobState.QUEUED
    # ...then its message is lost, as when a worker dies between delivery and claim.
    # (Priority 5 waits in kombu's list for step 9 - 5 of hodei.local.)
    broker = redis.Redis.from_url(pg_client.settings.broker_url)
    assert broker.delete("hodei.local\x06\x164") == 1
    warm = pg_client.submit("echo warm")  # brings up a worker, which then sits idle
    assert pg_client.wait(warm.id, timeout=60).state is JobState.SUCCEEDED
    assert pg_client.get(stranded.job.id).state is JobState.QUEUED

    assert republish_stranded(c.store, c.clock, c.publisher, after_s=3600) == 0  # too young
    # A worker READY now but busy within the window may just have taken the job's
    # message's predecessors: the job is waiting its turn, not stranded.
    warm = pg_client.get(warm.id)
    with c.store.transaction() as tx:
        worker = tx.workers.get(warm.worker_id)  # type: ignore[arg-type]
        others = [w for w in tx.workers.search(states=[WorkerState.READY]) if w != worker]
    for other in others:  # the SDK may have started two; keep the one that ran `warm`
        drain_worker(c.store, c.clock, other.id, actor="test")
    assert worker is not None and worker.registered_at and warm.finished_at
    window_start = worker.registered_at + (warm.finished_at - worker.registered_at) / 2
    busy_window = (c.clock.now() - window_start).total_seconds()
    assert republish_stranded(c.store, c.clock, c.publisher, after_s=busy_window) == 0
    republished = 0
    import time

    deadline = time.monotonic() + 30
    while not republished and time.monotonic() < deadline:
        republished = republish_stranded(c.store, c.clock, c.publisher, after_s=0.5)
        time.sleep(0.2)
    assert republished == 1
    done = pg_client.wait(stranded.job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert [ln.line for ln in pg_client.logs(done.id)] == ["once"]
    kinds = [e.event_type for e in job_events(pg_client, done.id)]
    assert kinds == ["JobCreated", "JobQueued", "JobRepublished", "JobStarted", "JobSucceeded"]
