"""`hodei worker start --burst`: a real worker process runs what its queue holds, then
exits by itself, so a test (or a script) waits for the process, not for a state."""

from __future__ import annotations

import subprocess
import sys

from hodei import JobSpec, JobState
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.store import EventQuery
from tests.support import hodei_env


def _burst(client: Client, *args: str) -> tuple[subprocess.CompletedProcess[str], object]:
    c = client.container
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:t")
    worker = subprocess.run(
        [sys.executable, "-m", "hodei", "worker", "start", "--burst", *args],
        env=hodei_env(client.settings, HODEI_OTP_TOKEN=token.secret),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    return worker, token.worker.id


def test_a_burst_worker_runs_its_queue_then_exits(client: Client) -> None:
    c = client.container
    # Submitted without provisioning (the SDK's submit would launch a worker of its own).
    specs = [
        JobSpec.create("echo one"),
        JobSpec.create("exit 3", max_attempts=2, retry={"backoff_s": 0.5}),
        JobSpec.create("echo three"),
    ]
    submitted = submit_jobs(c.store, c.clock, c.publisher, specs, actor="sdk:t")
    _, worker_id = _burst(client, "--idle-timeout", "600")  # not the idle timeout
    ended = [client.get(s.job.id) for s in submitted]
    assert [(j.state, j.attempt) for j in ended] == [
        (JobState.SUCCEEDED, 1),
        (JobState.FAILED, 2),  # its retry, due after the backoff, ran before the exit
        (JobState.SUCCEEDED, 1),
    ]
    assert {j.worker_id for j in ended} == {worker_id}
    with c.store.reading() as tx:
        worker = tx.workers.get(worker_id)  # type: ignore[arg-type]
        [terminated] = tx.events.search(
            EventQuery(aggregate_ids=[worker_id], event_types=["WorkerTerminated"])  # type: ignore[list-item]
        )
    assert worker is not None and worker.state.value == "TERMINATED"
    assert worker.termination_reason == "its queue is empty (burst)"
    assert terminated.payload["reason"] == "its queue is empty (burst)"


def test_a_burst_worker_with_nothing_to_do_exits_at_once(client: Client) -> None:
    _, worker_id = _burst(client, "--idle-timeout", "600")
    with client.container.store.reading() as tx:
        worker = tx.workers.get(worker_id)  # type: ignore[arg-type]
    assert worker is not None and worker.termination_reason == "its queue is empty (burst)"
