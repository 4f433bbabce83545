"""Maintenance tasks by name (hodei.core.Hodei.maintenance, what beat and `hodei
maintenance run` call) on hodei.testing's fakes. The first ones moved from
tests/integration/test_maintenance.py, where they ran on PostgreSQL: the rules are the
use cases', and what the store's queries select is checked on every store by
tests/integration/test_store_contract.py."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from hodei.core import MAINTENANCE_TASKS, Hodei
from hodei.domain.records import Provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderHealth, WorkerState
from hodei.errors import InvalidInput
from hodei.services.fleet.workers import create_worker_token, terminate_worker
from hodei.services.jobs.attempts import claim_attempt
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.providers import HealthReport
from hodei.services.ports.store import EventQuery, Store
from hodei.settings import Settings
from hodei.testing import FakeWiring
from tests.records import queued, ready_worker, waiting_job


class _Wiring(FakeWiring):
    def run(self, task: str) -> dict[str, Any]:
        return Hodei(self).maintenance(task)


@pytest.fixture
def c() -> _Wiring:
    wiring = _Wiring(settings=Settings(cancel_grace_s=1.0))
    now = wiring.clock.now()
    with wiring.store.transaction() as tx:
        tx.providers.add(Provider(uuid.uuid4(), "local", "local", now, now))
    return wiring


def _kinds(store: Store, *types: str) -> list[str]:
    with store.reading() as tx:
        return [e.event_type for e in tx.events.search(EventQuery(event_types=types))]


def test_expired_tokens_fail_their_workers_once(c: _Wiring) -> None:
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:t")
    assert c.run("expire_tokens") == {"provision_failed": []}  # not expired yet
    c.clock.advance(61)
    assert c.run("expire_tokens") == {"provision_failed": [str(token.worker.id)]}
    assert c.run("expire_tokens") == {"provision_failed": []}
    with c.store.reading() as tx:
        worker = tx.workers.get(token.worker.id)
    assert worker is not None and worker.state is WorkerState.PROVISION_FAILED
    assert _kinds(c.store, "TokenExpired", "WorkerProvisionFailed") == [
        "TokenExpired",
        "WorkerProvisionFailed",
    ]
    # Its (never started) infrastructure is removed.
    assert [w.id for w in c.launcher.destroyed] == [token.worker.id]


def test_a_running_job_past_its_deadline_on_a_gone_worker_times_out(c: _Wiring) -> None:
    job, worker = waiting_job(c.store, c.clock), ready_worker(c.store, c.clock)
    queued(c.store, c.clock, job)
    claim = claim_attempt(
        c.store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1"
    )
    assert claim.won
    assert c.run("enforce_deadlines") == {"timed_out": []}  # its worker is still there
    c.clock.advance(3600)
    assert c.run("enforce_deadlines") == {"timed_out": []}  # past it, but the worker lives
    terminate_worker(c.store, c.clock, worker.id, reason="vanished in a test")
    assert c.run("enforce_deadlines") == {"timed_out": [str(job.id)]}
    assert c.run("enforce_deadlines") == {"timed_out": []}
    with c.store.reading() as tx:
        stored = tx.jobs.get(job.id)
        [last] = tx.events.search(EventQuery(aggregate_ids=[job.id], newest_first=True, limit=1))
    assert stored is not None
    assert (stored.state, stored.failure_reason) == (JobState.TIMED_OUT, "timeout")
    assert (last.event_type, last.actor) == ("JobTimedOut", "system:reaper")


def test_a_job_within_its_deadline_and_grace_is_left_running(c: _Wiring) -> None:
    job, worker = waiting_job(c.store, c.clock), ready_worker(c.store, c.clock)
    queued(c.store, c.clock, job)
    assert claim_attempt(
        c.store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1"
    ).won
    terminate_worker(c.store, c.clock, worker.id, reason="vanished in a test")
    c.clock.advance(60 + 0.5)  # past its 60 s timeout, within the 1 s grace
    assert c.run("enforce_deadlines") == {"timed_out": []}
    c.clock.advance(timedelta(seconds=1).total_seconds())
    assert c.run("enforce_deadlines") == {"timed_out": [str(job.id)]}


def test_after_an_outage_the_reaper_waits_a_whole_stale_window(c: _Wiring) -> None:
    job, worker = waiting_job(c.store, c.clock), ready_worker(c.store, c.clock)
    queued(c.store, c.clock, job)
    assert claim_attempt(
        c.store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1"
    ).won
    c.clock.advance(c.settings.worker_stale_after_s + 1)
    c.database_back_s = 3.0  # the database answers again since 3 s: every beat is old
    assert c.run("reap_stale_workers") == {
        "lost_workers": [],
        "requeued": [],
        "failed": [],
        "deferred_s": 3.0,
    }
    c.database_back_s = None
    report = c.run("reap_stale_workers")
    assert report["lost_workers"] == [str(worker.id)]
    assert report["requeued"] == [str(job.id)]


def test_provision_launches_for_queued_work_and_reports_per_provider(c: _Wiring) -> None:
    submit_jobs(c.store, c.clock, c.publisher, [JobSpec.create("true")], actor="user:t")
    assert c.run("provision") == {"launched": {"local": 1}}
    assert c.run("provision") == {"launched": {}}  # one is starting for it
    assert len(c.launcher.launched) == 1


def test_health_checks_record_what_each_probe_says(c: _Wiring) -> None:
    c.health = HealthReport(ProviderHealth.UNHEALTHY, "no engine")
    assert c.run("check_provider_health") == {"local": "UNHEALTHY"}
    assert c.run("check_provider_health") == {}  # not due again before its interval


def test_every_task_runs_by_name_on_the_fakes(c: _Wiring) -> None:
    reports = {name: c.run(name) for name in MAINTENANCE_TASKS}
    assert reports["dispatch_pending"] == {"published": 0}
    assert reports["purge"] == {"purged_jobs": 0}
    assert reports["fold_state_counts"] == {"folded_rows": 0}
    assert reports["reconcile_providers"] == {}  # only the local provider
    assert reports["reschedule_unschedulable"] == {"scheduled": [], "failed": []}
    with pytest.raises(InvalidInput, match="unknown maintenance task"):
        c.run("vacuum")
