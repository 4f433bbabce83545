"""hodei.core.Hodei on hodei.testing's fakes: what follows each call (provisioning,
rescheduling, a retry published at once) without a database, broker or process."""

from __future__ import annotations

import uuid

import pytest

from hodei.core import Hodei
from hodei.domain.records import Provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderStatus
from hodei.errors import ProviderUnavailable
from hodei.services.jobs.attempts import Outcome
from hodei.services.jobs.schedules import create_schedule
from hodei.testing import FakeWiring
from tests.records import ready_worker


@pytest.fixture
def w() -> FakeWiring:
    wiring = FakeWiring()
    now = wiring.clock.now()
    with wiring.store.transaction() as tx:
        tx.providers.add(Provider(uuid.uuid4(), "local", "local", now, now, max_workers=2))
    return wiring


def test_a_submit_publishes_and_launches_a_worker_for_it(w: FakeWiring) -> None:
    [job] = Hodei(w).submit([JobSpec.create("true")], actor="user:t")
    assert [(p.job_id, p.queue) for p in w.publisher.published] == [(job.id, "hodei.local")]
    assert len(w.launcher.launched) == 1


def test_a_launch_that_fails_does_not_fail_the_submit(w: FakeWiring) -> None:
    w.launcher.fail_with = ProviderUnavailable("no engine")
    [job] = Hodei(w).submit([JobSpec.create("true")], actor="user:t")
    assert job.state is JobState.PENDING and w.publisher.published


def _claimed(w: FakeWiring, hodei: Hodei, spec: JobSpec) -> tuple[uuid.UUID, object]:
    [job] = hodei.submit([spec], actor="user:t")
    worker = ready_worker(w.store, w.clock)
    with w.store.transaction() as tx:  # on the job's queue
        tx.workers.add(
            type(worker)(**{**worker.__dict__, "queue": "hodei.local"})  # type: ignore[arg-type]
        )
    claim = hodei.claim(job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1")
    assert claim.won and claim.job is not None
    return worker.id, claim.job


def test_a_finish_publishes_a_retry_due_now_and_leaves_a_later_one(w: FakeWiring) -> None:
    hodei = Hodei(w)
    for backoff, published in ((0, 2), (30, 1)):
        w.publisher.published.clear()
        spec = JobSpec.create("false", max_attempts=2, retry={"backoff_s": backoff})
        worker_id, claimed = _claimed(w, hodei, spec)
        job = hodei.finish(claimed, worker_id=worker_id, outcome=Outcome(exit_code=1))  # type: ignore[arg-type]
        assert job is not None and (job.state, job.attempt) == (JobState.PENDING, 2)
        assert [p.attempt for p in w.publisher.published] == [1, 2][:published]


def test_a_retry_by_hand_publishes_and_launches(w: FakeWiring) -> None:
    hodei = Hodei(w)
    w.launcher.fail_with = ProviderUnavailable("no engine")  # no worker left for it
    [job] = hodei.submit([JobSpec.create("true")], actor="user:t")
    hodei.cancel(job.id, actor="user:t")
    w.launcher.fail_with = None
    retried = hodei.retry(job.id, actor="user:t")
    assert (retried.state, retried.attempt) == (JobState.PENDING, 2)
    assert w.publisher.published[-1].attempt == 2
    assert len(w.launcher.launched) == 1


def test_a_provider_that_appears_takes_the_jobs_that_waited_for_it(w: FakeWiring) -> None:
    hodei = Hodei(w)
    [job] = hodei.submit([JobSpec.create("true", labels={"gpu": "yes"})], actor="user:t")
    assert w.publisher.published == [] and w.launcher.launched == []
    now = w.clock.now()
    with w.store.transaction() as tx:
        tx.providers.add(Provider(uuid.uuid4(), "gpu", "local", now, now, labels={"gpu": "yes"}))
    hodei.providers_changed()
    assert [(p.job_id, p.queue) for p in w.publisher.published] == [(job.id, "hodei.gpu")]
    assert len(w.launcher.launched) == 1


def test_enabling_a_provider_launches_workers_for_its_queued_jobs(w: FakeWiring) -> None:
    hodei = Hodei(w)
    hodei.set_provider_status("local", ProviderStatus.DISABLED, actor="user:t")
    [job] = hodei.submit([JobSpec.create("true", provider="local")], actor="user:t")
    launched = len(w.launcher.launched)
    hodei.set_provider_status("local", ProviderStatus.ACTIVE, actor="user:t")
    assert len(w.launcher.launched) == launched + 1, job


def test_a_schedule_fired_by_hand_gets_a_worker_for_its_job(w: FakeWiring) -> None:
    create_schedule(
        w.store,
        w.clock,
        name="nightly",
        cron_expression="0 3 * * *",
        spec=JobSpec.create("true"),
        actor="user:t",
    )
    job = Hodei(w).trigger_schedule("nightly", actor="user:t")
    assert [p.job_id for p in w.publisher.published] == [job.id]
    assert len(w.launcher.launched) == 1
