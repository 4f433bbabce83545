"""Provider use cases on hodei.testing's fakes: status changes, health, removal.

The removal rule was tested only through a real worker on SQLite and PostgreSQL
(test_provider_extras.py); what the store's delete keeps of the history is a contract
scenario (tests/integration/test_store_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hodei.domain.records import Provider, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderHealth, ProviderStatus, WorkerState
from hodei.errors import Conflict, ProviderNotFound
from hodei.services.fleet.provider_health import record_health
from hodei.services.fleet.provider_registry import ProviderSpec, add_provider, set_provider_status
from hodei.services.fleet.provider_removal import remove_provider
from hodei.services.fleet.workers import create_worker_token, register_worker
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.providers import HealthReport
from hodei.services.ports.store import EventQuery
from hodei.testing import FixedClock, InMemoryStore, RecordingPublisher


def _valid(_type: str, config: dict[str, Any]) -> dict[str, Any]:
    return config


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


def _spare(store: InMemoryStore, clock: FixedClock) -> Provider:
    spec = ProviderSpec("spare", "local")
    return add_provider(store, clock, spec, validate=_valid, actor="user:t")


def _worker(store: InMemoryStore, clock: FixedClock) -> Worker:
    token = create_worker_token(store, clock, provider_name="spare", ttl_s=60, actor="user:t")
    return register_worker(store, clock, token.secret, infra_ref="test:none")


def _events(store: InMemoryStore, provider: Provider) -> list[dict[str, Any]]:
    with store.reading() as tx:
        found = tx.events.search(EventQuery(aggregate_ids=[provider.id]))
    return [{"type": e.event_type, "actor": e.actor, **e.payload} for e in found]


def test_remove_is_refused_while_a_worker_is_live_and_forced_ends_it(
    store: InMemoryStore, clock: FixedClock
) -> None:
    provider = _spare(store, clock)
    worker = _worker(store, clock)
    [waiting] = submit_jobs(
        store, clock, RecordingPublisher(), [JobSpec.create("true", provider="spare")], actor="t"
    )
    with pytest.raises(Conflict, match="provider spare has 1 live worker"):
        remove_provider(store, clock, "spare", force=False, actor="user:t")
    with store.reading() as tx:
        assert tx.providers.get(provider.id) is not None  # nothing changed
    removal = remove_provider(store, clock, "spare", force=True, actor="user:t")
    assert [w.id for w in removal.ended_workers] == [worker.id]
    assert [j.id for j in removal.failed_jobs] == [waiting.job.id]
    with store.reading() as tx:
        ended, failed = tx.workers.get(worker.id), tx.jobs.get(waiting.job.id)
        assert tx.providers.get(provider.id) is None
    assert ended is not None and ended.state is WorkerState.TERMINATED
    assert ended.termination_reason == "provider spare was removed"
    assert ended.provider_id is None
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.queue == "hodei.spare"  # history stays readable
    removed = _events(store, provider)[-1]
    assert (removed["type"], removed["force"]) == ("ProviderRemoved", True)
    assert removed["ended_workers"] == [str(worker.id)]
    assert removed["failed_jobs"] == [str(waiting.job.id)]
    with pytest.raises(ProviderNotFound):
        remove_provider(store, clock, "spare", force=True, actor="user:t")


def test_an_idle_provider_is_removed_without_force(store: InMemoryStore, clock: FixedClock) -> None:
    provider = _spare(store, clock)
    create_worker_token(store, clock, provider_name="spare", ttl_s=60, actor="user:t")
    removal = remove_provider(store, clock, "spare", force=False, actor="user:t")
    assert removal.failed_jobs == []  # an unused hand-issued token holds no capacity
    assert _events(store, provider)[-1]["type"] == "ProviderRemoved"


def test_a_status_change_writes_its_event_once(store: InMemoryStore, clock: FixedClock) -> None:
    provider = _spare(store, clock)
    drained = set_provider_status(store, clock, "spare", ProviderStatus.DRAINING, actor="user:t")
    assert drained.status is ProviderStatus.DRAINING
    again = set_provider_status(store, clock, "spare", ProviderStatus.DRAINING, actor="user:t")
    assert again.status is ProviderStatus.DRAINING
    changes = [e for e in _events(store, provider) if e["type"] == "ProviderStatusChanged"]
    assert [(e["old_status"], e["new_status"], e["actor"]) for e in changes] == [
        ("ACTIVE", "DRAINING", "user:t")
    ]


def test_health_is_recorded_each_time_and_evented_on_a_change(
    store: InMemoryStore, clock: FixedClock
) -> None:
    provider = _spare(store, clock)
    sick = HealthReport(ProviderHealth.UNHEALTHY, "no engine")
    assert record_health(store, clock, "spare", sick)
    clock.advance(30)
    assert not record_health(store, clock, "spare", sick)
    assert record_health(store, clock, "spare", sick, breaker="open")  # always an event
    with store.reading() as tx:
        stored = tx.providers.get(provider.id)
    assert stored is not None and stored.health_checked_at == clock.now()
    assert (stored.health, stored.health_message) == (ProviderHealth.UNHEALTHY, "no engine")
    changes = [e for e in _events(store, provider) if e["type"] == "ProviderHealthChanged"]
    assert [(e["old"], e["new"], e.get("breaker")) for e in changes] == [
        ("UNKNOWN", "UNHEALTHY", None),
        ("UNHEALTHY", "UNHEALTHY", "open"),
    ]
    assert not record_health(store, clock, "gone", sick)
