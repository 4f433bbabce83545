"""A provider's `min_workers` is a warm pool (issue 20): the provisioner keeps that many
workers live, and those workers do not exit when idle, so a job finds one ready instead
of waiting for a worker to start. Past `min_workers`, workers still idle out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from hodei import JobState
from hodei.domain.records import Worker
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

IDLE_TIMEOUT_S = 1.0


@pytest.fixture
def client(pg_settings: Settings) -> Iterator[Client]:
    settings = dataclasses.replace(pg_settings, worker_idle_timeout_s=IDLE_TIMEOUT_S)
    c = Client.from_env(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    yield c
    stop_workers(c)
    c.close()


def _worker(c: Client, worker_id: object) -> Worker:
    with c.container.store.transaction() as tx:
        worker = tx.workers.get(worker_id)  # type: ignore[arg-type]
    assert worker is not None
    return worker


def _ready(c: Client) -> list[Worker]:
    with c.container.store.transaction() as tx:
        return [w for w in tx.workers.search(limit=100) if w.state.value == "READY"]


def test_min_workers_keeps_a_worker_ready_past_its_idle_timeout(client: Client) -> None:
    client.update_provider("local", min_workers=1)
    TASKS["provision"](client.container)  # beat does this every 5 s
    (warm,) = wait_for(lambda: _ready(client), timeout=30, message="the pool's worker READY")

    done = client.wait(client.submit("echo warm").id, timeout=30)

    assert done.state is JobState.SUCCEEDED
    assert done.worker_id == warm.id  # the pool's worker took it: no launch waited for
    time.sleep(IDLE_TIMEOUT_S * 4)
    assert _worker(client, warm.id).state.value == "READY"

    # Out of the pool, the same worker idles out as any other.
    client.update_provider("local", min_workers=0)
    wait_for(
        lambda: _worker(client, warm.id).state.value == "TERMINATED",
        timeout=20,
        message="the worker to idle out",
    )
    assert "idle" in (_worker(client, warm.id).termination_reason or "")
