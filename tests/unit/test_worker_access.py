"""The worker API's rules (services/fleet/worker_access.py) on the in-memory store.

The same calls through a real ``hodei server`` and real workers are in
tests/integration/test_api_workers.py; here, the rules one by one, in milliseconds."""

from __future__ import annotations

import uuid

import pytest

from hodei.domain import transitions
from hodei.domain.records import Provider, Worker
from hodei.errors import Conflict, Forbidden, Unauthorized
from hodei.services.fleet import worker_access as access
from hodei.services.fleet.workers import create_worker_token, drain_worker, terminate_worker
from hodei.services.jobs.attempts import Outcome
from hodei.services.ports.store import EventQuery, Store
from hodei.testing import FixedClock, InMemoryStore
from tests.records import QUEUE, queued, waiting_job

TTL_S = 600.0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(clock: FixedClock) -> InMemoryStore:
    store = InMemoryStore()
    now = clock.now()
    with store.transaction() as tx:
        # "contract" has the queue of tests.records' jobs; "other" another one.
        for name in ("contract", "other"):
            tx.providers.add(Provider(uuid.uuid4(), name, "local", now, now, max_workers=4))
    return store


def _register(store: Store, clock: FixedClock, provider: str = "contract") -> access.Registration:
    issued = create_worker_token(store, clock, provider_name=provider, ttl_s=60, actor="sdk:t")
    return access.register_with_credential(
        store, clock, issued.secret, infra_ref="test:none", ttl_s=TTL_S
    )


def _refusals(store: Store, worker: Worker) -> list[dict[str, object]]:
    with store.reading() as tx:
        events = tx.events.search(
            EventQuery(event_types=["WorkerRequestRefused"], aggregate_ids=[worker.id])
        )
    return [e.payload for e in events]


def test_a_credential_names_its_worker_until_it_expires(store: Store, clock: FixedClock) -> None:
    done = _register(store, clock)
    assert done.credential.startswith("hodei_wkr_")
    assert (
        access.authenticate_worker(store, clock, done.credential, action="x").id == done.worker.id
    )
    with store.reading() as tx:  # only its hash is stored
        assert tx.worker_credentials.find(done.credential) is None

    clock.advance(TTL_S - 1)
    _, renewed = access.heartbeat_as(
        store, clock, done.worker, record=True, report=None, ttl_s=TTL_S
    )
    assert renewed is not None and renewed > done.expires_at
    clock.advance(TTL_S - 1)  # past the first expiry, within the renewed one
    access.authenticate_worker(store, clock, done.credential, action="x")

    clock.advance(2)
    with pytest.raises(Unauthorized, match="expired"):
        access.authenticate_worker(store, clock, done.credential, action="heartbeat")
    assert [r["action"] for r in _refusals(store, done.worker)] == ["heartbeat"]


def test_unknown_and_foreign_secrets_are_refused(store: Store, clock: FixedClock) -> None:
    for secret in (None, "", "hodei_pat_xyz", "hodei_wkr_never-issued"):
        with pytest.raises(Unauthorized):
            access.authenticate_worker(store, clock, secret, action="claim")


def test_a_terminated_or_lost_worker_s_credential_is_revoked(
    store: Store, clock: FixedClock
) -> None:
    ended = _register(store, clock)
    terminate_worker(store, clock, ended.worker.id, reason="idle")
    with pytest.raises(Unauthorized, match="TERMINATED"):
        access.authenticate_worker(store, clock, ended.credential, action="claim", job_id="j")
    assert _refusals(store, ended.worker)[0]["job_id"] == "j"

    lost = _register(store, clock)
    with store.transaction() as tx:
        worker = tx.workers.get(lost.worker.id)
        assert worker is not None
        silent_since = clock.advance(5)  # no sign of life since then
        lost_now = transitions.lose(worker, silent_since=silent_since, reason="t", now=clock.now())
        assert tx.apply(lost_now)
    with pytest.raises(Unauthorized, match="LOST"):
        access.authenticate_worker(store, clock, lost.credential, action="finish")


def test_a_claim_outside_the_worker_s_queue_is_refused(store: Store, clock: FixedClock) -> None:
    other = _register(store, clock, provider="other")
    job = waiting_job(store, clock)
    queued(store, clock, job)
    with pytest.raises(Forbidden, match=f"not on queue {other.worker.queue}"):
        access.claim_as(store, clock, other.worker, job_id=job.id, attempt=1, task_id="t")
    (refusal,) = _refusals(store, other.worker)
    assert refusal["action"] == "claim" and refusal["job_id"] == str(job.id)
    # Still there for a worker of its queue.
    mine = _register(store, clock)
    assert access.claim_as(store, clock, mine.worker, job_id=job.id, attempt=1, task_id="t").won
    assert mine.worker.queue == QUEUE


def test_a_draining_worker_claims_nothing_but_finishes_what_it_runs(
    store: Store, clock: FixedClock
) -> None:
    done = _register(store, clock)
    first, second = waiting_job(store, clock), waiting_job(store, clock)
    queued(store, clock, first)
    queued(store, clock, second)
    claim = access.claim_as(store, clock, done.worker, job_id=first.id, attempt=1, task_id="t")
    assert claim.won
    draining = drain_worker(store, clock, done.worker.id, actor="sdk:op")
    with pytest.raises(Conflict, match="draining"):
        access.claim_as(store, clock, draining, job_id=second.id, attempt=1, task_id="t")
    worker = access.authenticate_worker(store, clock, done.credential, action="finish")
    after = access.finish_as(
        store, clock, worker, job_id=first.id, attempt=1, outcome=Outcome(exit_code=0)
    )
    assert after.state.value == "SUCCEEDED"
    # The same finish again: no longer running on it, refused and recorded.
    with pytest.raises(Forbidden, match="not running on this worker"):
        access.finish_as(
            store, clock, worker, job_id=first.id, attempt=1, outcome=Outcome(exit_code=1)
        )
    assert [r["action"] for r in _refusals(store, worker)] == ["finish"]
