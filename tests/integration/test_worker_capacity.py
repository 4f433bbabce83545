"""What counts as a live worker: an unused hand-issued token holds no capacity, and a
worker row with no sign of life at all is judged by when it was created."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import timedelta

from hodei import JobState
from hodei.domain.records import Worker
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.integration.operators_plant import HAPPY, now, plant_job, plant_worker
from tests.support import run_cli


def test_an_unused_token_blocks_no_job(embedded_settings: Settings) -> None:
    """A fresh home, `worker token create` and nothing else: `job run` still runs."""
    token = run_cli(embedded_settings, "worker", "token", "create")
    assert token.returncode == 0, token.stderr
    listed = run_cli(embedded_settings, "worker", "list")
    assert "PROVISIONING (unused token)" in listed.stdout, listed.stdout
    ran = run_cli(embedded_settings, "job", "run", "--", "echo", "hello", timeout=60)
    assert (ran.returncode, ran.stdout.strip()) == (0, "hello"), ran.stderr
    status = run_cli(embedded_settings, "status", "--output", "json")
    local = next(p for p in json.loads(status.stdout)["providers"] if p["name"] == "local")
    assert local["live_workers"] <= 1, local  # the worker that ran it; not the token


def test_diagnose_names_an_unused_token_and_it_holds_no_slot(client: Client) -> None:
    c = client.container
    issued = create_worker_token(
        c.store, c.clock, provider_name="local", ttl_s=600, actor="sdk:test"
    )
    job = plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(minutes=2)
    )
    result = client.diagnose(job.id)
    assert result.code == "no_worker", result.verdict
    assert f'its only "worker" is {str(issued.worker.id)[:8]}, a token issued by hand' in (
        result.verdict
    )
    assert "--task provision" in result.action
    workers = next(s for s in result.steps if s.title.startswith("4."))
    assert "an unused token" in workers.lines[0]
    local = next(p for p in client.status().providers if p.name == "local")
    assert local.live_workers == 0
    assert next(p for p in client.providers() if p.provider.name == "local").live_workers == 0


def _silent_worker(client: Client, age: timedelta) -> Worker:
    """A READY row with neither heartbeat nor registration time (what hand-made SQL or a
    crash between two writes leaves)."""
    at = now() - age
    with client.container.store.transaction() as tx:
        provider = tx.providers.get_by_name("local")
        assert provider is not None
        worker = Worker(
            id=uuid.uuid4(),
            name="silent",
            provider_id=provider.id,
            queue=provider.queue,
            state=WorkerState.READY,
            created_at=at,
            updated_at=at,
            infra_ref="pid:999999999",
        )
        tx.workers.add(worker)
    return worker


def test_a_worker_that_never_gave_a_sign_of_life_is_stale(client: Client) -> None:
    silent = _silent_worker(client, timedelta(minutes=10))
    queued = plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(minutes=2)
    )
    diagnosis = client.diagnose(queued.id)
    assert diagnosis.code == "stale_worker", diagnosis.verdict
    assert "has neither registered nor sent a heartbeat" in diagnosis.verdict
    assert [f.ids["worker_id"] for f in client.doctor().findings] == [str(silent.id)]

    # It is not idle capacity: a new job gets a worker of its own and runs.
    job = client.submit("echo ran")
    assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED

    # The reaper declares it LOST: beat's task, unless the wait above already did (a
    # waiter reaps its QUEUED job's provider, Client._tend).
    reaped = run_cli(client.settings, "maintenance", "run", "--task", "reap_stale_workers")
    assert reaped.returncode == 0, reaped.stderr
    with client.container.store.transaction() as tx:
        after = tx.workers.get(silent.id)
    assert after is not None and after.state is WorkerState.LOST
    assert after.termination_reason is not None
    assert after.termination_reason.startswith(
        "neither registered nor sent a heartbeat since it was created at "
    ), after.termination_reason


def test_launches_that_never_started_show_on_the_jobs_timeline_and_diagnose(
    embedded_settings: Settings,
) -> None:
    """A worker launched for the job whose token expired before it started."""
    short = dataclasses.replace(embedded_settings, token_ttl_s=0.05)
    with Client.from_env(
        **{f.name: getattr(short, f.name) for f in dataclasses.fields(short)}
    ) as c:
        try:
            job = c.submit("echo hi")
            time.sleep(0.2)
            expired = run_cli(short, "maintenance", "run", "--task", "expire_tokens")
            assert expired.returncode == 0, expired.stderr
            kinds = [e.event_type for e in c.timeline(job.id)]
            assert "WorkerProvisionFailed" in kinds and "TokenExpired" in kinds, kinds
            diagnosis = c.diagnose(job.id)
            assert diagnosis.code == "no_worker", diagnosis.verdict
            assert "1 worker(s) launched for it never started" in diagnosis.verdict
            assert "never registered before its token expired" in diagnosis.verdict
            assert f"`hodei job timeline {job.id}`" in diagnosis.action
            # The fix (a TTL long enough to start a worker in), then the action's command.
            provision = run_cli(embedded_settings, "maintenance", "run", "--task", "provision")
            assert provision.returncode == 0, provision.stderr
            assert c.wait(job.id, timeout=60).state is JobState.SUCCEEDED
        finally:
            stop_workers(c)


def test_a_provisioning_row_no_token_can_register_is_failed(client: Client) -> None:
    """A launched worker's row whose token is gone or was consumed by a process that
    crashed before registering: it held a slot forever."""
    launched = plant_worker(
        client, state=WorkerState.PROVISIONING, heartbeat_age=None, infra_ref="pid:999999999"
    )
    fresh = plant_worker(
        client,
        state=WorkerState.PROVISIONING,
        heartbeat_age=None,
        infra_ref="pid:999999998",
        age=timedelta(seconds=5),
    )
    ran = run_cli(client.settings, "maintenance", "run", "--task", "expire_tokens")
    assert ran.returncode == 0, ran.stderr
    with client.container.store.transaction() as tx:
        old, young = tx.workers.get(launched.id), tx.workers.get(fresh.id)
    assert old is not None and old.state is WorkerState.PROVISION_FAILED
    assert old.termination_reason == "never registered, and has no token left to register with"
    assert young is not None and young.state is WorkerState.PROVISIONING  # within the grace


def test_a_launch_whose_token_expired_is_not_counted_as_starting(client: Client) -> None:
    """A worker launched but dead before it registered (its broker was unreachable, it
    crashed at start) and no scheduler to expire its token: the next submit launched
    nothing, taking the row for a worker still starting, and `job run` waited forever."""
    plant_worker(
        client, state=WorkerState.PROVISIONING, heartbeat_age=None, infra_ref="pid:999999999"
    )
    job = client.submit("echo ran")
    try:
        assert client.wait(job.id, timeout=30).state is JobState.SUCCEEDED
    finally:
        stop_workers(client)


def test_job_run_needs_no_scheduler_when_dead_workers_fill_the_provider(
    embedded_settings: Settings,
) -> None:
    """The embedded default after a reboot: its provider's two slots are held by rows of
    workers that died without a word (no scheduler runs to reap them). `job run` must
    not wait for a reaper nothing runs: the stale rows are LOST and its job runs."""
    client = Client.from_env(
        **{
            f.name: getattr(embedded_settings, f.name)
            for f in dataclasses.fields(embedded_settings)
        }
    )
    try:
        local = next(p for p in client.providers() if p.provider.name == "local").provider
        dead = [_silent_worker(client, timedelta(minutes=10)) for _ in range(local.max_workers)]
        started = time.monotonic()
        ran = run_cli(embedded_settings, "job", "run", "--", "echo", "hello", timeout=60)
        assert (ran.returncode, ran.stdout.strip()) == (0, "hello"), ran.stderr
        assert time.monotonic() - started < 30
        with client.container.store.reading() as tx:
            states = [tx.workers.get(w.id) for w in dead]
        assert [w.state if w else None for w in states] == [WorkerState.LOST] * len(dead)
    finally:
        stop_workers(client)
        client.close()
