"""Flower's task events: every run-job task's sent, received, started and succeeded
events reach an event receiver, and a worker (or a submit_many) sends them in batches,
not one message each. A failed attempt is a failed task; maintenance sends none."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.events.event import get_exchange
from kombu import Queue

from hodei import JobState
from hodei.domain.specs import JobSpec
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import hodei_env, terminate, wait_for

WORKER_EVENTS = ("task-received", "task-started", "task-succeeded")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_workers_task_events_arrive_complete_and_batched(pg_client: Client) -> None:
    messages: list[list[dict[str, Any]]] = []  # each message's events (a batch is a list)
    with _listening(pg_client, messages) as drain:
        jobs = [pg_client.submit("true", name=f"events-{i}") for i in range(6)]
        drain(lambda: _succeeded(messages) >= len(jobs), 90)
    assert all(pg_client.get(job.id).state is JobState.SUCCEEDED for job in jobs)

    by_task: dict[str, set[str]] = defaultdict(set)
    for event in (e for batch in messages for e in batch):
        by_task[event["uuid"]].add(event["type"])
    run_jobs = [types for types in by_task.values() if "task-received" in types]
    assert len(run_jobs) == len(jobs)
    assert all(set(WORKER_EVENTS) <= types for types in run_jobs), run_jobs

    from_worker = [b for b in messages if b and b[0]["type"] in WORKER_EVENTS]
    sent = sum(len(b) for b in from_worker)
    # One message per event would be 18 messages; batched, a job's events share one.
    assert len(from_worker) <= sent // 2, [len(b) for b in from_worker]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_task_that_ends_during_a_warm_shutdown_still_reports_success(
    pg_client: Client,
) -> None:
    messages: list[list[dict[str, Any]]] = []
    with _listening(pg_client, messages) as drain:
        job = pg_client.submit("sleep 2", name="ends-while-stopping")
        wait_for(lambda: pg_client.get(job.id).state is JobState.RUNNING, timeout=60)
        stop_workers(pg_client)  # SIGTERM: Celery lets the running task finish
        drain(lambda: _succeeded(messages) >= 1, 10)
    assert pg_client.get(job.id).state is JobState.SUCCEEDED
    assert _succeeded(messages) == 1


@pytest.mark.postgres
@pytest.mark.redis
def test_submit_many_sends_its_task_sent_events_in_one_message(pg_client: Client) -> None:
    messages: list[list[dict[str, Any]]] = []
    with _listening(pg_client, messages) as drain:
        single = pg_client.submit("true", name="one")
        jobs = pg_client.submit_many([JobSpec.create("true", name=f"many-{i}") for i in range(30)])
        drain(lambda: len(_sent(messages)) >= len(jobs) + 1, 30)
    sent = _sent(messages)
    assert {str(job.id) for job in [single, *jobs]} <= {e["job_id"] for e in sent}
    carrying = [batch for batch in messages if any(e["type"] == "task-sent" for e in batch)]
    # The single submit's event on its own, the 30 of submit_many together.
    assert sorted(len(batch) for batch in carrying) == [1, 30]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_failed_attempt_is_a_failed_task_and_is_finished_once(pg_client: Client) -> None:
    messages: list[list[dict[str, Any]]] = []
    with _listening(pg_client, messages) as drain:
        job = pg_client.submit(
            JobSpec.create("exit 3", name="fails", max_attempts=2, retry={"backoff_s": 0})
        )
        drain(lambda: len(_of_type(messages, "task-failed")) >= 2, 90)
        drain(lambda: False, 0.5)  # anything sent after, e.g. a wrong task-succeeded
    job = pg_client.wait(job.id, timeout=30)
    assert (job.state, job.attempt, job.exit_code) == (JobState.FAILED, 2, 3)

    failed = _of_type(messages, "task-failed")
    assert len(failed) == 2  # one failed task per attempt, as Flower shows them
    assert all("AttemptFailed" in e["exception"] and "exit 3" in e["exception"] for e in failed)
    assert not _of_type(messages, "task-succeeded")
    # Raising after the outcome was recorded neither finished an attempt twice nor put
    # the message back: each attempt started once and ended once.
    types = [e.event_type for e in pg_client.timeline(job.id, related=False)]
    assert types.count("JobStarted") == 2, types
    assert types.count("JobFailed") + types.count("JobRetryScheduled") == 2, types


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_maintenance_tasks_send_no_task_events(pg_client: Client, pg_settings: Settings) -> None:
    log = pg_settings.home.parent / "scheduler.log"
    messages: list[list[dict[str, Any]]] = []
    with _listening(pg_client, messages) as drain, open(log, "w") as out:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "hodei", "scheduler"],
            env=hodei_env(pg_settings),
            cwd=pg_settings.home.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # dispatch_pending runs every 2 s: three runs, sent by beat and run by the
            # scheduler's worker, while a user's job runs too.
            drain(lambda: log.read_text().count("maintenance dispatch_pending") >= 3, 60)
            job = pg_client.submit("true", name="users-job")
            drain(lambda: _succeeded(messages) >= 1, 60)
        finally:
            terminate(scheduler)
    assert log.read_text().count("maintenance dispatch_pending") >= 3
    assert pg_client.get(job.id).state is JobState.SUCCEEDED

    events = [e for batch in messages for e in batch]
    names = {e["uuid"]: e["name"] for e in events if e.get("name")}
    assert set(names.values()) == {"hodei.run_job"}, sorted(set(names.values()))
    assert {e["uuid"] for e in events} == set(names), "events of tasks never sent or received"


def _of_type(messages: list[list[dict[str, Any]]], event_type: str) -> list[dict[str, Any]]:
    return [e for batch in messages for e in batch if e["type"] == event_type]


def _sent(messages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """task-sent events, each with the job id read from its arguments as Flower shows
    them: "('<name>', id=<job id>, attempt=<n>)"."""
    return [
        {**e, "job_id": m[1] if (m := re.search(r"id=([0-9a-f-]{36})", e["args"])) else None}
        for batch in messages
        for e in batch
        if e["type"] == "task-sent"
    ]


@contextlib.contextmanager
def _listening(
    client: Client, messages: list[list[dict[str, Any]]]
) -> Iterator[Callable[[Callable[[], bool], float], None]]:
    """Collect task events as Flower does, with a queue of its own on the event exchange
    (fanout on Redis); yields ``drain(until, timeout)``."""
    app = client.container.app

    def on_message(body: Any, message: Any) -> None:
        messages.append(body if isinstance(body, list) else [body])

    with app.connection_for_read() as conn:
        queue = Queue(
            f"test.events.{uuid.uuid4().hex}",
            exchange=get_exchange(conn, name=app.conf.event_exchange),
            routing_key="task.#",
            auto_delete=True,
            durable=False,
        )

        def drain(until: Callable[[], bool], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until():
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.5)

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            # kombu subscribes on the first drain; events published before it are lost.
            drain(lambda: False, 0.2)
            yield drain


def _succeeded(messages: list[list[dict[str, Any]]]) -> int:
    return len({e["uuid"] for batch in messages for e in batch if e["type"] == "task-succeeded"})
