"""Use cases on hodei.testing's fakes: no database, no broker, milliseconds each.

What crosses a boundary (atomic writes on SQLite and PostgreSQL, real workers, the
broker) stays in tests/integration and tests/e2e; test_store_contract.py checks that
the fake store behaves like the real ones."""

from __future__ import annotations

import uuid

import pytest

from hodei.domain.records import Job, Provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, WorkerState
from hodei.errors import ProviderUnavailable, TokenRejected
from hodei.services.fleet.bootstrap_tokens import consume_token
from hodei.services.fleet.provisioning import provision
from hodei.services.fleet.workers import (
    broker_back,
    broker_lost,
    create_worker_token,
    register_worker,
    terminate_worker,
)
from hodei.services.jobs.attempts import Outcome, claim_attempt
from hodei.services.jobs.cancel_retry import retry_job
from hodei.services.jobs.dispatch import dispatch_pending
from hodei.services.jobs.submission import submit_jobs
from hodei.services.maintenance import enforce_deadlines, expire_tokens
from hodei.services.ports.store import EventQuery, Store
from hodei.testing import FakeLauncher, FixedClock, InMemoryStore, RecordingPublisher
from tests.records import queued, ready_worker, waiting_job


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(clock: FixedClock) -> InMemoryStore:
    store = InMemoryStore()
    now = clock.now()
    with store.transaction() as tx:
        tx.providers.add(Provider(uuid.uuid4(), "local", "local", now, now, max_workers=2))
    return store


def _kinds(store: Store, **query: object) -> list[str]:
    with store.reading() as tx:
        return [e.event_type for e in tx.events.search(EventQuery(**query))]  # type: ignore[arg-type]


def _rejections(store: Store) -> list[str]:
    with store.reading() as tx:
        events = tx.events.search(EventQuery(event_types=["TokenRejected"]))
    return [e.payload["reason"] for e in events]


def _secret(store: Store, clock: FixedClock, ttl_s: float = 60) -> str:
    token = create_worker_token(store, clock, provider_name="local", ttl_s=ttl_s, actor="sdk:t")
    return token.secret


# Moved from tests/integration/test_worker_tokens.py: the rule is the use case's, the
# database adds nothing here (the race for one token stays there, on PostgreSQL).
def test_a_valid_token_registers_its_worker_once(store: Store, clock: FixedClock) -> None:
    secret = _secret(store, clock)
    worker = register_worker(store, clock, secret, infra_ref="test:not-a-process")
    assert worker.state is WorkerState.READY and worker.registered_at is not None
    with pytest.raises(TokenRejected) as again:
        register_worker(store, clock, secret)
    assert again.value.reason == "consumed"
    assert "already used" in str(again.value)
    assert _rejections(store) == ["consumed"]


def test_expired_and_unknown_tokens_are_rejected_with_the_reason(
    store: Store, clock: FixedClock
) -> None:
    secret = _secret(store, clock, ttl_s=1)
    clock.advance(3600)
    with pytest.raises(TokenRejected) as expired:
        consume_token(store, clock, secret)
    with pytest.raises(TokenRejected) as unknown:
        consume_token(store, clock, "hodei_never-issued")
    assert (expired.value.reason, unknown.value.reason) == ("expired", "unknown")
    assert sorted(_rejections(store)) == ["expired", "unknown"]
    # The worker the token was for never registered: PROVISION_FAILED, with both events.
    [failed] = expire_tokens(store, clock)
    assert _kinds(store, aggregate_ids=[failed.id])[-1] == "WorkerProvisionFailed"


def test_a_submit_publishes_then_confirms_queued(store: Store, clock: FixedClock) -> None:
    publisher = RecordingPublisher()
    [submitted] = submit_jobs(
        store, clock, publisher, [JobSpec.create(["true"], name="a")], actor="user:t"
    )
    [publication] = publisher.published
    assert (publication.job_id, publication.queue) == (submitted.job.id, "hodei.local")
    # The real publisher confirms from its after-publish hook; here the job stays PENDING
    # until dispatch_pending publishes it again (the retry path of a lost confirmation).
    assert _kinds(store, aggregate_ids=[submitted.job.id]) == ["JobCreated"]


def test_a_broker_outage_leaves_the_job_pending_until_dispatch(
    store: Store, clock: FixedClock
) -> None:
    publisher = RecordingPublisher(down=True)
    [submitted] = submit_jobs(
        store, clock, publisher, [JobSpec.create(["true"], name="a")], actor="user:t"
    )
    job_id = submitted.job.id
    assert _kinds(store, aggregate_ids=[job_id]) == ["JobCreated", "JobPublishFailed"]
    publisher.down = False
    clock.advance(10)  # past the publish grace
    assert dispatch_pending(store, clock, publisher) == 1
    assert [p.job_id for p in publisher.published] == [job_id]


def test_a_publish_failure_is_recorded_once_per_outage(store: Store, clock: FixedClock) -> None:
    # Every idle worker and the scheduler try to publish a PENDING job every second or
    # two while the broker is down: one JobPublishFailed per outage, not one per try.
    publisher = RecordingPublisher(down=True)
    [submitted] = submit_jobs(
        store, clock, publisher, [JobSpec.create(["true"], name="a")], actor="user:t"
    )
    job_id = submitted.job.id
    for _ in range(3):
        clock.advance(10)
        assert dispatch_pending(store, clock, publisher) == 0
    assert _kinds(store, aggregate_ids=[job_id]) == ["JobCreated", "JobPublishFailed"]
    # The broker is back: the job runs (and fails); its retry meets the next outage.
    publisher.down = False
    clock.advance(10)
    assert dispatch_pending(store, clock, publisher) == 1
    publisher.join(store, clock, ready_worker(store, clock).id, run=lambda _j: Outcome(1))
    publisher.down = True
    retry_job(store, clock, publisher, job_id, actor="user:t")
    for _ in range(2):
        clock.advance(10)
        dispatch_pending(store, clock, publisher)
    kinds = _kinds(store, aggregate_ids=[job_id])
    assert kinds.count("JobPublishFailed") == 2, kinds
    assert kinds[-1] == "JobPublishFailed"


def test_provisioning_launches_a_worker_for_waiting_work(store: Store, clock: FixedClock) -> None:
    submit_jobs(
        store,
        clock,
        RecordingPublisher(),
        [JobSpec.create(["true"], name="a")],
        actor="user:t",
    )
    launcher = FakeLauncher()
    launched = provision(store, clock, lambda _p: launcher, "local", token_ttl_s=60, environment={})
    assert [t.worker.id for t in launched] == [r.worker_id for r in launcher.launched]
    with store.reading() as tx:
        worker = tx.workers.get(launched[0].worker.id)
    assert worker is not None and worker.infra_ref is not None
    assert worker.infra_ref.startswith("fake:")


def test_a_launch_that_fails_leaves_the_worker_provision_failed(
    store: Store, clock: FixedClock
) -> None:
    submit_jobs(
        store, clock, RecordingPublisher(), [JobSpec.create(["true"], name="a")], actor="user:t"
    )
    launcher = FakeLauncher(fail_with=ProviderUnavailable("no engine"))
    assert (
        provision(store, clock, lambda _p: launcher, "local", token_ttl_s=60, environment={}) == []
    )
    with store.reading() as tx:
        [worker] = tx.workers.search()
    assert worker.state is WorkerState.PROVISION_FAILED
    assert worker.termination_reason == "no engine"


def test_a_launch_known_dead_is_replaced_and_one_alive_keeps_its_slot(
    store: Store, clock: FixedClock
) -> None:
    """A launch whose process ended before it registered held the provider's slot."""
    with store.transaction() as tx:
        provider = tx.providers.get_by_name("local")
        assert provider is not None
        tx.providers.update(provider.id, max_workers=1)
    submit_jobs(store, clock, RecordingPublisher(), [JobSpec.create(["true"])], actor="user:t")
    launcher = FakeLauncher()
    [first] = provision(store, clock, lambda _p: launcher, "local", token_ttl_s=600, environment={})
    submit_jobs(store, clock, RecordingPublisher(), [JobSpec.create(["true"])], actor="user:t")
    # Alive (the launcher cannot say it ended): it holds the one slot, nothing launches.
    assert (
        provision(store, clock, lambda _p: launcher, "local", token_ttl_s=600, environment={}) == []
    )
    launcher.ended[first.worker.id] = "its process ended before it registered"
    [second] = provision(
        store, clock, lambda _p: launcher, "local", token_ttl_s=600, environment={}
    )
    with store.reading() as tx:
        dead = tx.workers.get(first.worker.id)
    assert dead is not None and dead.state is WorkerState.PROVISION_FAILED
    assert dead.termination_reason == "its process ended before it registered"
    assert second.worker.id != first.worker.id


def test_a_running_job_whose_worker_is_gone_times_out_past_its_deadline(
    store: Store, clock: FixedClock
) -> None:
    job, worker = waiting_job(store, clock), ready_worker(store, clock)
    queued(store, clock, job)
    assert claim_attempt(store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t")
    assert terminate_worker(store, clock, worker.id, reason="killed")
    assert enforce_deadlines(store, clock, grace_s=30) == []  # not past it yet
    clock.advance(60 + 31)
    [ended] = enforce_deadlines(store, clock, grace_s=30)
    assert ended.id == job.id
    with store.reading() as tx:
        stored = tx.jobs.get(job.id)
    assert stored is not None and stored.state is JobState.TIMED_OUT


def test_a_failed_attempt_is_retried_when_due_then_succeeds(
    store: Store, clock: FixedClock
) -> None:
    publisher = RecordingPublisher()
    spec = JobSpec.create(["flaky"], name="a", max_attempts=2, retry={"backoff_s": 30})
    [submitted] = submit_jobs(store, clock, publisher, [spec], actor="user:t")
    worker = ready_worker(store, clock)
    exit_codes = iter([1, 0])

    def run(_job: Job) -> Outcome:
        return Outcome(exit_code=next(exit_codes))

    [retried] = publisher.join(store, clock, worker.id, run)
    assert (retried.state, retried.attempt) == (JobState.PENDING, 2)
    assert dispatch_pending(store, clock, publisher) == 0  # not due for 30 s
    clock.advance(30)
    assert dispatch_pending(store, clock, publisher) == 1
    [done] = publisher.join(store, clock, worker.id, run)
    assert (done.id, done.state, done.attempt) == (submitted.job.id, JobState.SUCCEEDED, 2)
    assert _kinds(store, aggregate_ids=[done.id]) == [
        "JobCreated",
        "JobQueued",
        "JobStarted",
        "JobRetryScheduled",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]


def test_a_message_delivered_twice_runs_once(store: Store, clock: FixedClock) -> None:
    publisher = RecordingPublisher()
    submit_jobs(store, clock, publisher, [JobSpec.create(["true"], name="a")], actor="user:t")
    publisher.published.append(publisher.published[0])  # the broker redelivers it
    ran: list[Job] = []
    worker = ready_worker(store, clock)
    publisher.join(store, clock, worker.id, lambda job: ran.append(job) or Outcome(exit_code=0))
    assert len(ran) == 1


def test_an_ending_says_whether_a_job_runs_after_it_and_releases_that_job(
    store: Store, clock: FixedClock
) -> None:
    from hodei.services.jobs import gates

    publisher = RecordingPublisher()
    [parent, plain] = submit_jobs(
        store, clock, publisher, [JobSpec.create(["true"]), JobSpec.create(["true"])], actor="u"
    )
    [child] = submit_jobs(
        store, clock, publisher, [JobSpec.create(["true"], after=[parent.job.id])], actor="u"
    )
    assert child.job.held
    ended = {j.id: j for j in publisher.join(store, clock, ready_worker(store, clock).id)}
    assert (ended[parent.job.id].has_dependents, ended[plain.job.id].has_dependents) == (
        True,
        False,
    )
    assert gates.after_end(store, clock, publisher, [ended[plain.job.id]]).released == []
    [released] = gates.after_end(store, clock, publisher, [ended[parent.job.id]]).released
    assert released.id == child.job.id


def test_a_worker_without_its_broker_is_degraded_then_follows_its_jobs_again(
    store: Store, clock: FixedClock
) -> None:
    worker = ready_worker(store, clock)
    assert broker_lost(store, clock, worker.id, reason="cannot reach its broker")
    assert not broker_lost(store, clock, worker.id, reason="again")  # said once

    def state() -> WorkerState:
        with store.reading() as tx:
            w = tx.workers.get(worker.id)
        assert w is not None
        return w.state

    assert state() is WorkerState.DEGRADED
    assert broker_back(store, clock, worker.id, down_s=3.0)
    assert state() is WorkerState.READY
    # Lost while running a job: BUSY again when back, as long as the job runs.
    job = waiting_job(store, clock)
    queued(store, clock, job)
    assert claim_attempt(store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t")
    assert broker_lost(store, clock, worker.id, reason="cannot reach its broker")
    assert broker_back(store, clock, worker.id, down_s=1.0)
    assert state() is WorkerState.BUSY
