"""Every `hodei job diagnose` verdict whose action is a command: plant the condition it
names, run the commands its action gives (as the CLI, the way an operator would) and
check that the job moves. No scheduler runs here, so nothing else moves it."""

from __future__ import annotations

import dataclasses
import re
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from hodei import JobSpec, JobState
from hodei.domain.records import Job, Worker
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.services.jobs.submission import submit_jobs
from hodei.settings import Settings
from tests.integration.operators_plant import HAPPY, now, plant_job, plant_worker
from tests.support import kill_tree, pid_of, run_cli, wait_for

# Commands an action names for reading, not for fixing.
_READING = (
    "hodei job timeline",
    "hodei job logs",
    "hodei worker show",
    "hodei job cancel",
    "hodei scheduler",  # "is `hodei scheduler` running?": the long-running alternative
)


def act(client: Client, action: str, alternative: int = 0) -> list[str]:
    """Run the commands of one of ``action``'s alternatives (split at "; or" and ", or"),
    the first by default, in order."""
    first = re.split(r"[;,] or ", action)[alternative]
    commands = [c for c in re.findall(r"`(hodei [^`]+)`", first) if not c.startswith(_READING)]
    assert commands, f"no command to run in: {action}"
    for command in commands:
        done = run_cli(client.settings, *shlex.split(command)[1:])
        assert done.returncode == 0, (command, done.stderr)
    return commands


def queued(client: Client, command: str = "true") -> Job:
    """A job stored and published to hodei.local, with no worker launched for it (as when
    no scheduler runs and whoever submitted could not launch one)."""
    c = client.container
    (result,) = submit_jobs(c.store, c.clock, c.publisher, [JobSpec.create(command)], actor="t")
    wait_for(lambda: client.get(result.job.id).state is JobState.QUEUED, message="queued")
    return result.job


def _silent_worker(client: Client) -> Worker:
    worker = plant_worker(
        client,
        state=WorkerState.READY,
        heartbeat_age=timedelta(minutes=5),
        infra_ref="pid:999999999",
    )
    return worker


def no_scheduler(client: Client) -> Job:
    return queued(client)


def max_workers_zero(client: Client) -> Job:
    job = queued(client)
    client.update_provider("local", max_workers=0)
    return job


def disabled(client: Client) -> Job:
    job = queued(client)
    client.disable_provider("local")
    return job


def label_nobody_has(client: Client) -> Job:
    return client.submit("true", labels={"gpu": "true"})


def no_capacity_at_submit(client: Client) -> Job:
    client.update_provider("local", max_workers=0)
    return client.submit("true")


def stale_worker(client: Client) -> Job:
    _silent_worker(client)
    return queued(client)


def not_published(client: Client) -> Job:
    return plant_job(client, state=JobState.PENDING, steps=HAPPY[:1], age=timedelta(minutes=5))


def provider_matches_now(client: Client) -> Job:
    return plant_job(
        client, state=JobState.PENDING, steps=HAPPY[:1], queue=None, age=timedelta(seconds=5)
    )


def message_lost(client: Client) -> Job:
    warm = client.submit("true")  # an idle worker on hodei.local
    assert client.wait(warm.id, timeout=60).state is JobState.SUCCEEDED
    time.sleep(client.settings.republish_after_s + 0.5)  # idle that long: message lost
    return plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(minutes=6)
    )


def worker_lost(client: Client) -> Job:
    gone = plant_worker(client, state=WorkerState.LOST, heartbeat_age=timedelta(minutes=5))
    return plant_job(
        client,
        state=JobState.RUNNING,
        steps=HAPPY[:3],
        worker=gone,
        started_at=now() - timedelta(minutes=3),
        deadline_at=now() - timedelta(minutes=1),
    )


def waiting_capacity(client: Client) -> Job:
    client.update_provider("local", max_workers=1)
    busy = client.submit("sleep 30")  # keeps the only worker busy
    wait_for(lambda: client.get(busy.id).state is JobState.RUNNING, message="running")
    return client.submit("true")


def failed(client: Client) -> Job:
    job = client.submit("exit 3")
    assert client.wait(job.id, timeout=60).state is JobState.FAILED
    return job


def due_later(client: Client) -> Job:
    return client.submit("true", run_at=timedelta(hours=1))


def waits_for_dependency(client: Client) -> Job:
    dependency = client.submit("sleep 60")
    return client.submit("true", after=[dependency.id])


def waits_for_key_slot(client: Client) -> Job:
    client.submit("sleep 60", concurrency_key="deploy")
    return client.submit("true", concurrency_key="deploy")


SCENARIOS: list[tuple[Callable[[Client], Job], str, set[JobState]]] = [
    (due_later, "waiting_due", {JobState.SUCCEEDED}),
    (waits_for_dependency, "waiting_dependencies", {JobState.SUCCEEDED}),
    (waits_for_key_slot, "waiting_concurrency", {JobState.SUCCEEDED}),
    (no_scheduler, "no_worker", {JobState.SUCCEEDED}),
    (max_workers_zero, "no_worker", {JobState.SUCCEEDED}),
    (disabled, "no_worker", {JobState.SUCCEEDED}),
    (label_nobody_has, "no_provider", {JobState.SUCCEEDED}),
    (no_capacity_at_submit, "no_provider", {JobState.SUCCEEDED}),
    (stale_worker, "stale_worker", {JobState.SUCCEEDED}),
    (not_published, "not_published", {JobState.SUCCEEDED}),
    (provider_matches_now, "no_provider", {JobState.SUCCEEDED}),
    (message_lost, "message_lost", {JobState.SUCCEEDED}),
    (worker_lost, "worker_lost", {JobState.SUCCEEDED}),  # TIMED_OUT, then retried
    (failed, "failed", {JobState.PENDING, JobState.QUEUED, JobState.RUNNING, JobState.FAILED}),
    (waiting_capacity, "waiting_capacity", {JobState.SUCCEEDED}),  # its "raise capacity"
]


@pytest.fixture
def quick_client(embedded_settings: Settings) -> Iterator[Client]:
    """Publishing a stranded queued job again after 2 s, not 5 minutes."""
    settings = dataclasses.replace(embedded_settings, republish_after_s=2.0)
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    with Client.from_env(**fields) as client:
        yield client
        # The scenarios are over: SIGKILL their workers rather than wait ~4 s for each
        # to shut down gracefully (graceful shutdown is tested elsewhere).
        with client.container.store.transaction() as tx:
            pids = [p for w in tx.workers.search(limit=1000) if (p := pid_of(w.infra_ref))]
        for pid in pids:
            kill_tree(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plant", "code", "moved_to"), SCENARIOS, ids=[s[0].__name__ for s in SCENARIOS]
)
def test_the_action_of_each_verdict_moves_the_job(
    quick_client: Client,
    plant: Callable[[Client], Job],
    code: str,
    moved_to: set[JobState],
) -> None:
    client = quick_client
    job = plant(client)
    diagnosis = client.diagnose(job.id)
    assert diagnosis.code == code, diagnosis.verdict
    attempt = client.get(job.id).attempt
    act(client, diagnosis.action, alternative=1 if code == "waiting_capacity" else 0)
    moved = wait_for(
        lambda: (j := client.get(job.id)).state in moved_to and j.attempt >= attempt and j,
        timeout=60,
        message=f"{code} to move after `{diagnosis.action}`",
    )
    if code == "failed":
        assert moved and moved.attempt == attempt + 1
