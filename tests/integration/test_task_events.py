"""Flower's task events: every run-job task's received, started and succeeded events
reach an event receiver, and a worker sends them in batches, not one message each."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from celery.events.event import get_exchange
from kombu import Queue

from hodei import JobState
from hodei.sdk import Client

WORKER_EVENTS = ("task-received", "task-started", "task-succeeded")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_workers_task_events_arrive_complete_and_batched(pg_client: Client) -> None:
    app = pg_client.container.app
    messages: list[list[dict[str, Any]]] = []  # each message's events (a batch is a list)

    def on_message(body: Any, message: Any) -> None:
        messages.append(body if isinstance(body, list) else [body])

    with app.connection_for_read() as conn:
        # What Flower does: a queue of its own on the event exchange (fanout on Redis).
        queue = Queue(
            f"test.events.{uuid.uuid4().hex}",
            exchange=get_exchange(conn, name=app.conf.event_exchange),
            routing_key="task.#",
            auto_delete=True,
            durable=False,
        )
        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            jobs = [pg_client.submit("true", name=f"events-{i}") for i in range(6)]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not _all_seen(messages, len(jobs)):
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.5)
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


def _all_seen(messages: list[list[dict[str, Any]]], expected: int) -> bool:
    done = {e["uuid"] for batch in messages for e in batch if e["type"] == "task-succeeded"}
    return len(done) >= expected
