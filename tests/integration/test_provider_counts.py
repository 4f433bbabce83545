"""Providers with their live worker counts, read in one query, on both backends."""

from __future__ import annotations

from datetime import timedelta

from hodei.domain.records import provider_of_queue, queue_for
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from tests.integration.operators_plant import plant_worker


def test_every_provider_comes_with_its_live_workers(client: Client) -> None:
    client.add_provider("spare", "docker", config={"image": "hodei-worker:test"})
    for state in (WorkerState.READY, WorkerState.BUSY, WorkerState.PROVISIONING):
        plant_worker(
            client, state=state, heartbeat_age=timedelta(seconds=1), infra_ref="pid:999999999"
        )
    # A token issued by hand that no process presented holds no slot.
    plant_worker(client, state=WorkerState.PROVISIONING, heartbeat_age=None)
    for state in (WorkerState.TERMINATED, WorkerState.LOST):
        plant_worker(client, state=state, heartbeat_age=timedelta(minutes=5))
    with client.container.store.transaction() as tx:
        found = {c.provider.name: c.live_workers for c in tx.providers.search_with_live_workers()}
        counts = tx.providers.live_worker_counts()
        local = tx.providers.get_by_name("local")
    assert found == {"local": 3, "spare": 0}
    assert local is not None and counts[local.id] == 3


def test_a_queue_names_its_provider() -> None:
    assert provider_of_queue(queue_for("gpu-eu")) == "gpu-eu"
    assert provider_of_queue("celery") is None
    assert provider_of_queue(None) is None
