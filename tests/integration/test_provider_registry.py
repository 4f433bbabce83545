"""The provider registry, health and rescheduling (issue 4), through the CLI and SDK:
every change is an event, health flips and breaker transitions show in events and in
``provider show``, and a PENDING job finds a provider when one appears."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from hodei import JobSpec, JobState
from hodei.domain.states import ProviderHealth
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.store import EventQuery
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import run_cli, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _provider_events(c: Client, name: str) -> list[tuple[str, dict]]:
    provider_id = c.provider(name).provider.id
    with c.container.store.transaction() as tx:
        events = tx.events.search(EventQuery(aggregate_ids=[provider_id]))
    return [(e.event_type, e.payload) for e in events]


def test_the_cli_registers_changes_and_shows_providers(
    pg_settings: Settings, pg_client: Client
) -> None:
    config = json.dumps({"image": "w:1", "pull_policy": "never"})
    added = run_cli(
        pg_settings,
        "provider",
        "add",
        "dock",
        "--type",
        "docker",
        "--config",
        config,
        "--priority",
        "5",
        "--max-workers",
        "3",
        "--label",
        "gpu=true",
        "--allowed-region",
        "eu",
        "--region",
        "eu",
        "--output",
        "json",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["labels"] == {"gpu": "true"}
    assert run_cli(pg_settings, "provider", "update", "dock", "--max-workers", "4").returncode == 0
    drained = run_cli(pg_settings, "provider", "drain", "dock")
    assert drained.stdout.strip() == "provider dock is DRAINING"
    shown = json.loads(run_cli(pg_settings, "provider", "show", "dock", "-o", "json").stdout)
    assert (shown["status"], shown["max_workers"], shown["priority"]) == ("DRAINING", 4, 5)
    listed = json.loads(run_cli(pg_settings, "provider", "list", "-o", "json").stdout)
    assert [p["name"] for p in listed] == ["dock", "local"]
    assert [kind for kind, _ in _provider_events(pg_client, "dock")] == [
        "ProviderRegistered",
        "ProviderUpdated",
        "ProviderStatusChanged",
    ]
    updated = _provider_events(pg_client, "dock")[1][1]
    assert updated["changes"] == {"max_workers": {"old": 3, "new": 4}}

    bad = run_cli(pg_settings, "provider", "add", "x", "--type", "docker", "--config", "{}")
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "hodei: error: invalid docker config: missing field image",
    )
    missing = run_cli(pg_settings, "provider", "show", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (
        3,
        "hodei: error: no provider named 'nope'",
    )


def test_breaker_transitions_and_health_flips_are_events_and_shown(pg_client: Client) -> None:
    pg_client.add_provider(
        "brk", "docker", config={"image": "w:1", "base_url": "unix:///nonexistent/docker.sock"}
    )
    for _ in range(6):  # five failures open the breaker; the sixth call is refused by it
        pg_client.check_provider_health("brk")

    shown = pg_client.provider("brk").provider
    assert shown.health.value == "UNHEALTHY"
    assert shown.health_message and "circuit breaker open" in shown.health_message
    flips = [
        (p["old"], p["new"], p.get("breaker"))
        for kind, p in _provider_events(pg_client, "brk")
        if kind == "ProviderHealthChanged"
    ]
    assert flips == [
        ("UNKNOWN", "UNHEALTHY", None),
        ("UNHEALTHY", "UNHEALTHY", {"from": "closed", "to": "open"}),
    ]
    # UNHEALTHY providers are not selected: the job waits, with the reason.
    job = pg_client.submit("echo x", provider="brk")
    unschedulable = [e for e in pg_client.timeline(job.id) if e.event_type == "JobUnschedulable"]
    assert unschedulable[0].payload["reasons"]["brk"].startswith("health is UNHEALTHY")


@pytest.fixture
def short_queue_client(pg_settings: Settings) -> Iterator[Client]:
    settings = dataclasses.replace(pg_settings, queue_timeout_s=1.0)
    c = Client.from_env(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    yield c
    stop_workers(c)
    c.close()


@pytest.mark.slow
def test_a_pending_job_runs_once_a_provider_matches(short_queue_client: Client) -> None:
    c = short_queue_client
    job = c.submit("echo found-one", labels={"gpu": "true"})
    assert (c.get(job.id).state, c.get(job.id).queue) == (JobState.PENDING, None)
    reasons = next(e for e in c.timeline(job.id) if e.event_type == "JobUnschedulable")
    assert reasons.payload["reasons"] == {"local": "missing label gpu=true"}

    c.update_provider("local", labels={"gpu": "true"})

    done = c.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert [line.line for line in c.logs(job.id)] == ["found-one"]


def test_an_unschedulable_job_fails_with_no_provider_after_the_queue_timeout(
    short_queue_client: Client,
) -> None:
    c = short_queue_client
    job = c.submit("echo never", labels={"os": "plan9"})

    report = wait_for(
        lambda: TASKS["reschedule_unschedulable"](c.container)["failed"],
        timeout=10,
        interval=0.2,
        message="the queue timeout",
    )

    assert report == [str(job.id)]
    done = c.get(job.id)
    assert (done.state, done.failure_reason) == (JobState.FAILED, "no_provider")
    failed = next(e for e in c.timeline(job.id) if e.event_type == "JobFailed")
    assert failed.payload["reasons"] == {"local": "missing label os=plan9"}


def test_provisioning_launches_nothing_for_an_unhealthy_provider(pg_client: Client) -> None:
    c = pg_client.container
    # Queued on `local` by the service, which (unlike the SDK) does not provision.
    [queued] = submit_jobs(c.store, c.clock, c.publisher, [JobSpec.create("echo later")], actor="t")
    local = pg_client.provider("local").provider
    with c.store.transaction() as tx:
        tx.providers.update(local.id, health=ProviderHealth.UNHEALTHY)

    TASKS["provision"](c)
    with c.store.transaction() as tx:
        assert tx.workers.search(limit=10) == []

    with c.store.transaction() as tx:
        tx.providers.update(local.id, health=ProviderHealth.HEALTHY)
    TASKS["provision"](c)
    assert pg_client.wait(queued.job.id, timeout=60).state is JobState.SUCCEEDED
