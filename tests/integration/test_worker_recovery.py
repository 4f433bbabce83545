"""Workers die; jobs are not lost and never complete twice (issue 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hodei import JobState
from hodei.domain.records import Job, Worker
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.ports.store import EventQuery
from tests.support import (
    alive,
    hodei_env,
    is_subsequence,
    job_events,
    pid_of,
    process_group_alive,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _running(client: Client, job: Job) -> Job:
    return wait_for(
        lambda: (j := client.get(job.id)).state is JobState.RUNNING and j,
        timeout=60,
        message="job RUNNING",
    )


def _worker(client: Client, worker_id: object) -> Worker:
    with client.container.store.transaction() as tx:
        worker = tx.workers.get(worker_id)  # type: ignore[arg-type]
    assert worker is not None
    return worker


def _worker_events(client: Client, worker_id: object) -> list[str]:
    with client.container.store.transaction() as tx:
        events = tx.events.search(EventQuery(aggregate_ids=[worker_id]))  # type: ignore[list-item]
    return [e.event_type for e in events]


def _reap(client: Client) -> dict:
    return TASKS["reap_stale_workers"](client.container)


def test_a_sigkilled_worker_s_job_runs_again_once(pg_client: Client, tmp_path: Path) -> None:
    done_file = tmp_path / "completions"
    job = pg_client.submit(
        f'echo $$; if [ "$HODEI_ATTEMPT" = 1 ]; then sleep 30; fi; '
        f'echo "$HODEI_ATTEMPT" >> {done_file}'
    )
    running = _running(pg_client, job)
    first_worker = _worker(pg_client, running.worker_id)
    wait_for(lambda: pg_client.logs(job.id), message="the job printed its pgid")
    pgid = int(pg_client.logs(job.id)[0].line)
    os.kill(pid_of(first_worker.infra_ref) or 0, signal.SIGKILL)

    report = wait_for(
        lambda: (r := _reap(pg_client))["requeued"] and r,
        timeout=30,
        interval=0.5,
        message="the reaper to requeue",
    )
    assert report["lost_workers"] == [str(first_worker.id)]
    # Destroying the lost worker also killed the job it left behind.
    wait_for(lambda: not process_group_alive(pgid), timeout=5, message="orphan killed")
    TASKS["provision"](pg_client.container)  # beat would do this every 5 s
    done = pg_client.wait(job.id, timeout=90)

    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    assert done.worker_id != first_worker.id
    assert done_file.read_text().splitlines() == ["2"]
    kinds = [e.event_type for e in job_events(pg_client, job.id)]
    assert kinds[-4:] == ["JobRequeued", "JobQueued", "JobStarted", "JobSucceeded"]
    # The job's full timeline tells the story with its workers' events interleaved.
    story = [e.event_type for e in pg_client.timeline(job.id)]
    assert is_subsequence(["WorkerLost", "JobRequeued", "JobStarted", "JobSucceeded"], story)
    requeued = next(e for e in job_events(pg_client, job.id) if e.event_type == "JobRequeued")
    assert requeued.payload["reason"] == "worker_lost"
    assert "WorkerLost" in _worker_events(pg_client, first_worker.id)
    with pg_client.container.store.transaction() as tx:
        states = [(a.attempt_no, a.state.value) for a in tx.attempts.search(job.id)]
    assert states == [(1, "LOST"), (2, "SUCCEEDED")]


def test_a_sigkilled_worker_s_job_dies_with_it(pg_client: Client, tmp_path: Path) -> None:
    """No reaper and no provider involved: the worker's orphan guard kills the job group,
    children of the shell included, as soon as the worker process is gone."""
    done_file = tmp_path / "completions"
    job = pg_client.submit(f"echo $$; sleep 3 & wait; echo done >> {done_file}")
    running = _running(pg_client, job)
    wait_for(lambda: pg_client.logs(job.id), message="the job printed its pgid")
    pgid = int(pg_client.logs(job.id)[0].line)
    os.kill(pid_of(_worker(pg_client, running.worker_id).infra_ref) or 0, signal.SIGKILL)

    wait_for(lambda: not process_group_alive(pgid), timeout=2, message="job group killed")
    time.sleep(3.5)  # past the point where the sleep would have ended
    assert not done_file.exists()


def test_heartbeats_continue_while_a_job_holds_the_cpu(pg_client: Client) -> None:
    job = pg_client.submit("python3 -c 'while True: pass'", timeout_s=4)
    running = _running(pg_client, job)
    interval = pg_client.settings.heartbeat_interval_s
    ages = []
    while pg_client.get(job.id).state is JobState.RUNNING:
        worker = _worker(pg_client, running.worker_id)
        assert worker.last_heartbeat is not None
        ages.append((pg_client.container.clock.now() - worker.last_heartbeat).total_seconds())
        time.sleep(0.2)
    assert len(ages) > 5
    assert max(ages) < interval * 4, ages
    assert pg_client.get(job.id).state is JobState.TIMED_OUT


def test_a_worker_that_stops_heartbeating_without_dying_is_reaped(pg_client: Client) -> None:
    job = pg_client.submit("echo warm-up")
    done = pg_client.wait(job.id, timeout=60)
    worker = _worker(pg_client, done.worker_id)
    pid = pid_of(worker.infra_ref) or 0
    os.kill(pid, signal.SIGSTOP)
    try:
        report = wait_for(
            lambda: (r := _reap(pg_client))["lost_workers"] and r,
            timeout=30,
            interval=0.5,
            message="reaped while frozen",
        )
        assert report["lost_workers"] == [str(worker.id)]
        assert _worker(pg_client, worker.id).state.value == "LOST"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not alive(pid), timeout=20, message="the frozen worker is gone")


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(pg_client: Client) -> None:
    job = pg_client.submit("sleep 2; echo finished")
    running = _running(pg_client, job)
    worker = _worker(pg_client, running.worker_id)
    pid = pid_of(worker.infra_ref) or 0
    os.kill(pid, signal.SIGTERM)
    done = pg_client.wait(job.id, timeout=30)
    assert done.state is JobState.SUCCEEDED
    assert [ln.line for ln in pg_client.logs(job.id)] == ["finished"]
    wait_for(lambda: not alive(pid), timeout=20, message="worker exit")
    stopped = _worker(pg_client, worker.id)
    assert stopped.state.value == "TERMINATED"
    assert stopped.termination_reason == "SIGTERM"
    assert _worker_events(pg_client, worker.id)[-1] == "WorkerTerminated"


def test_an_idle_worker_exits_by_itself(pg_client: Client) -> None:
    from hodei.services.fleet.workers import create_worker_token

    c = pg_client.container
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:test")
    worker = subprocess.run(
        [os.sys.executable, "-m", "hodei", "worker", "start", "--idle-timeout", "1.5"],
        env=hodei_env(pg_client.settings, HODEI_OTP_TOKEN=token.secret),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    stopped = _worker(pg_client, token.worker.id)
    assert stopped.state.value == "TERMINATED"
    assert stopped.termination_reason == "idle for 1.5s"
    assert _worker_events(pg_client, token.worker.id) == [
        "WorkerProvisioning",
        "WorkerRegistered",
        "WorkerReady",
        "WorkerTerminated",
    ]


def test_two_reapers_at_once_requeue_once(pg_client: Client) -> None:
    job = pg_client.submit('if [ "$HODEI_ATTEMPT" = 1 ]; then sleep 30; fi')
    running = _running(pg_client, job)
    worker = _worker(pg_client, running.worker_id)
    os.kill(pid_of(worker.infra_ref) or 0, signal.SIGKILL)
    time.sleep(pg_client.settings.worker_stale_after_s + 1)
    command = [
        os.sys.executable,
        "-m",
        "hodei",
        "maintenance",
        "run",
        "--task",
        "reap_stale_workers",
    ]
    env = hodei_env(pg_client.settings)
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(str(job.id) in out for out in outputs) == 1, outputs
    kinds = [e.event_type for e in job_events(pg_client, job.id)]
    assert kinds.count("JobRequeued") == 1
    assert pg_client.get(job.id).attempt == 2
