"""Maintenance with real workers on PostgreSQL: a drain, and a scheduler process that
recovers a killed worker's job. The tasks' rules are tested on the fakes
(tests/unit/test_maintenance_tasks.py) and their queries on every store
(tests/integration/test_store_contract.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from hodei import JobState
from hodei.sdk import Client
from tests.support import hodei_env, pid_of, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_drain_lets_the_job_finish_then_the_worker_exits(pg_client: Client) -> None:
    from hodei.services.fleet.workers import drain_worker

    job = pg_client.submit("sleep 1; echo drained-after")
    running = wait_for(lambda: (j := pg_client.get(job.id)).state is JobState.RUNNING and j)
    c = pg_client.container
    drain_worker(c.store, c.clock, running.worker_id, actor="sdk:test")  # type: ignore[arg-type]
    assert pg_client.wait(job.id, timeout=30).state is JobState.SUCCEEDED

    def terminated() -> object:
        with c.store.transaction() as tx:
            w = tx.workers.get(running.worker_id)  # type: ignore[arg-type]
        return w is not None and w.state.value == "TERMINATED" and w

    worker = wait_for(terminated, timeout=20, message="drained worker exits")
    assert worker.termination_reason == "draining by the control plane"


@pytest.mark.slow
def test_the_scheduler_alone_recovers_a_job_after_its_worker_is_killed(
    pg_client: Client,
) -> None:
    job = pg_client.submit('if [ "$HODEI_ATTEMPT" = 1 ]; then sleep 60; fi; echo recovered')
    running = wait_for(
        lambda: (j := pg_client.get(job.id)).state is JobState.RUNNING and j, timeout=60
    )
    with pg_client.container.store.transaction() as tx:
        worker = tx.workers.get(running.worker_id)  # type: ignore[arg-type]
    assert worker is not None
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "hodei", "scheduler"],
        env=hodei_env(pg_client.settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        os.kill(pid_of(worker.infra_ref) or 0, signal.SIGKILL)
        done = pg_client.wait(job.id, timeout=90)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=30)
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    assert [ln.line for ln in pg_client.logs(job.id)] == ["recovered"]
