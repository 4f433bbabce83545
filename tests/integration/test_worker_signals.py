"""A worker survives SIGHUP (Celery would re-execute it, and its single-use token would
be refused), and the reason recorded for its end is the signal that ended it."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator

import pytest

from hodei import JobState
from hodei.domain.records import Worker
from hodei.sdk import Client
from hodei.services.ports.store import EventQuery
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import alive, pid_of, wait_for

pytestmark = [pytest.mark.slow]


@pytest.fixture
def client(embedded_settings: Settings) -> Iterator[Client]:
    fields = dataclasses.fields(embedded_settings)
    client = Client.from_env(**{f.name: getattr(embedded_settings, f.name) for f in fields})
    yield client
    stop_workers(client)
    client.close()


def _worker(client: Client, worker_id: object) -> Worker:
    with client.container.store.transaction() as tx:
        worker = tx.workers.get(worker_id)  # type: ignore[arg-type]
    assert worker is not None
    return worker


def _events(client: Client, aggregate_id: object) -> list[str]:
    with client.container.store.transaction() as tx:
        found = tx.events.search(EventQuery(aggregate_ids=[aggregate_id]))  # type: ignore[list-item]
    return [e.event_type for e in found]


def test_a_worker_survives_sighup_and_records_the_signal_that_ends_it(client: Client) -> None:
    first = client.wait(client.submit("echo one").id, timeout=60)
    assert first.state is JobState.SUCCEEDED
    worker = _worker(client, first.worker_id)
    pid = pid_of(worker.infra_ref)
    assert pid is not None

    os.kill(pid, signal.SIGHUP)
    # Celery's restart stops the worker within seconds (the next poll of its broker),
    # then re-executes it, and the token is refused.
    watch_until = time.monotonic() + 6
    while time.monotonic() < watch_until:
        assert alive(pid) and _worker(client, worker.id).state.value == "READY"
        time.sleep(0.2)
    second = client.wait(client.submit("echo two").id, timeout=60)

    assert second.state is JobState.SUCCEEDED
    assert second.worker_id == worker.id
    assert alive(pid)
    assert "WorkerTerminated" not in _events(client, worker.id)
    with client.container.store.transaction() as tx:
        rejected = tx.events.search(EventQuery(event_types=["TokenRejected"], limit=1000))
    assert [e.payload for e in rejected] == []  # its token was presented once

    os.kill(pid, signal.SIGINT)
    wait_for(lambda: not alive(pid), timeout=30, message="the worker to exit")
    ended = _worker(client, worker.id)
    assert (ended.state.value, ended.termination_reason) == ("TERMINATED", "SIGINT")
