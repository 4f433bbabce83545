"""Beat's maintenance tasks against real PostgreSQL (and a real scheduler process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from hodei import JobSpec, JobState
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.execution import claim_attempt
from hodei.services.ports import EventQuery
from hodei.services.submission import submit_jobs
from hodei.services.workers import create_worker_token, register_worker, terminate_worker
from tests.support import hodei_env, job_events, pid_of, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _events(client: Client, *types: str) -> list[str]:
    with client.container.store.transaction() as tx:
        return [e.event_type for e in tx.events.search(EventQuery(event_types=types))]


def _sql(client: Client, statement: str, **params: object) -> None:
    with client.container.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_expired_tokens_fail_their_workers_once(pg_client: Client) -> None:
    c = pg_client.container
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:test")
    _sql(pg_client, "UPDATE worker_bootstrap_tokens SET expires_at = now() - interval '1 s'")
    assert TASKS["expire_tokens"](c) == {"provision_failed": [str(token.worker.id)]}
    assert TASKS["expire_tokens"](c) == {"provision_failed": []}
    with c.store.transaction() as tx:
        worker = tx.workers.get(token.worker.id)
    assert worker is not None and worker.state.value == "PROVISION_FAILED"
    assert _events(pg_client, "TokenExpired", "WorkerProvisionFailed") == [
        "TokenExpired",
        "WorkerProvisionFailed",
    ]


def _running_on_a_vanished_worker(client: Client) -> tuple[str, str]:
    c = client.container
    [submitted] = submit_jobs(
        c.store, c.clock, c.publisher, [JobSpec.create("sleep 60")], actor="sdk:test"
    )
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:test")
    worker = register_worker(c.store, c.clock, token.secret, infra_ref="test:none")
    job = wait_for(lambda: (j := client.get(submitted.job.id)).state is JobState.QUEUED and j)
    assert claim_attempt(
        c.store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1"
    ).won
    terminate_worker(c.store, c.clock, worker.id, reason="vanished in a test")
    return str(job.id), str(worker.id)


def test_a_running_job_past_its_deadline_on_a_gone_worker_times_out(pg_client: Client) -> None:
    job_id, _ = _running_on_a_vanished_worker(pg_client)
    assert TASKS["enforce_deadlines"](pg_client.container) == {"timed_out": []}
    _sql(
        pg_client,
        "UPDATE jobs SET deadline_at = now() - interval '1 hour' WHERE id = :id",
        id=job_id,
    )
    assert TASKS["enforce_deadlines"](pg_client.container) == {"timed_out": [job_id]}
    job = pg_client.get(job_id)
    assert (job.state, job.failure_reason) == (JobState.TIMED_OUT, "timeout")
    last = job_events(pg_client, job_id)[-1]
    assert (last.event_type, last.actor) == ("JobTimedOut", "system:reaper")


def test_purge_deletes_old_finished_jobs_with_their_records(pg_client: Client) -> None:
    old = pg_client.submit("echo old")
    recent = pg_client.submit("echo recent")
    for job in (old, recent):
        assert pg_client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    _sql(
        pg_client,
        "UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = :id",
        id=str(old.id),
    )
    assert TASKS["purge"](pg_client.container) == {"purged_jobs": 1}
    assert [j.id for j in pg_client.list()] == [recent.id]
    with pg_client.container.engine.connect() as conn:
        for table, column in (
            ("job_logs", "job_id"),
            ("job_attempts", "job_id"),
            ("domain_events", "aggregate_id"),
        ):
            count = conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": str(old.id)}
            ).scalar()
            assert count == 0, table
    assert pg_client.logs(recent.id)


def test_drain_lets_the_job_finish_then_the_worker_exits(pg_client: Client) -> None:
    from hodei.services.workers import drain_worker

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
