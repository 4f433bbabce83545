"""The same use-case scenarios against hodei.testing.InMemoryStore, SQLite and PostgreSQL:
the fake behaves like the real stores wherever the use cases look.

Queue, claim and finish write the job, its attempt, the worker and the event all or
nothing: on SQLite one statement after another, on PostgreSQL one combined statement
(store/run_repository.py), in memory one copy of the state. The races only PostgreSQL
can have stay in test_claim_and_finish.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from hodei.domain import transitions
from hodei.domain.events import DomainEvent
from hodei.domain.records import Job, LogLine, Provider, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import (
    AttemptState,
    JobState,
    ProviderHealth,
    ProviderStatus,
    WorkerState,
)
from hodei.errors import JobNotCancellable
from hodei.services.fleet.reconcile import reschedule_unschedulable
from hodei.services.fleet.workers import WorkerReport, drain_worker, heartbeat, terminate_worker
from hodei.services.jobs.attempts import Outcome, claim_attempt, finish_attempt
from hodei.services.jobs.cancel_retry import cancel_job, retry_job
from hodei.services.jobs.dispatch import Confirmation, confirm_queued, publish_jobs
from hodei.services.jobs.schedules import create_schedule
from hodei.services.maintenance import purge, reap_stale_workers
from hodei.services.ports.store import EventQuery, JobQuery, Store
from hodei.testing import FixedClock, InMemoryStore, RecordingPublisher
from tests.records import QUEUE, queued, ready_worker, waiting_job


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    client = request.getfixturevalue(
        "embedded_client" if request.param == "sqlite" else "pg_client"
    )
    yield client.container.store


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _kinds(store: Store, job: Job) -> list[str]:
    with store.reading() as tx:
        return [e.event_type for e in tx.events.search(EventQuery(aggregate_ids=[job.id]))]


def _attempt(store: Store, job: Job, attempt_no: int = 1) -> tuple[AttemptState, str | None]:
    with store.reading() as tx:
        found = {a.attempt_no: a for a in tx.attempts.search(job.id)}
    return found[attempt_no].state, found[attempt_no].task_id


def _worker(store: Store, worker: Worker) -> Worker:
    with store.reading() as tx:
        found = tx.workers.get(worker.id)
    assert found is not None
    return found


def _claim(
    store: Store, clock: FixedClock, job: Job, worker: Worker, task_id: str = "t"
) -> Job | None:
    claim = claim_attempt(
        store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id=task_id
    )
    return claim.job if claim.won else None


def _finish(
    store: Store, clock: FixedClock, job: Job, worker: Worker, exit_code: int = 0
) -> Job | None:
    outcome = Outcome(exit_code, duration_ms=5)
    return finish_attempt(store, clock, job=job, worker_id=worker.id, outcome=outcome)


def _confirm(store: Store, clock: FixedClock, *jobs: Job, attempt: int = 1) -> int:
    confirmations = [
        Confirmation(j.id, attempt, f"t-{j.id}", "hodei.local", j.correlation_id, "only")
        for j in jobs
    ]
    return confirm_queued(store, clock, confirmations)


def _read(store: Store, job: Job) -> Job:
    with store.reading() as tx:
        found = tx.jobs.get(job.id)
    assert found is not None
    return found


def test_a_job_queues_starts_and_succeeds(store: Store, clock: FixedClock) -> None:
    job, worker = waiting_job(store, clock), ready_worker(store, clock)
    queued(store, clock, job)
    claim = claim_attempt(
        store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-1"
    )
    assert claim.won and claim.job is not None
    assert claim.job.deadline_at == clock.now() + timedelta(seconds=60)
    stored = _read(store, job)
    assert claim.job == stored  # the claim hands the runner the job as stored, unread
    assert (stored.state, stored.worker_id, stored.started_at) == (
        JobState.RUNNING,
        worker.id,
        clock.now(),
    )
    assert _attempt(store, job) == (AttemptState.RUNNING, "t-1")
    with store.reading() as tx:
        busy = tx.workers.get(worker.id)
        [started] = tx.events.search(EventQuery(event_types=["JobStarted"]))
    assert busy is not None and busy.state is WorkerState.BUSY and busy.running_jobs == 1
    assert busy.current_job_id == job.id
    assert started.correlation_id == job.correlation_id
    assert started.payload["worker_id"] == str(worker.id)
    # A second delivery of the same attempt loses.
    again = claim_attempt(
        store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t-2"
    )
    assert not again.won
    clock.advance(1)
    done = finish_attempt(
        store, clock, job=claim.job, worker_id=worker.id, outcome=Outcome(exit_code=0)
    )
    assert done is not None and done.state is JobState.SUCCEEDED
    assert _read(store, job).state is JobState.SUCCEEDED
    with store.reading() as tx:
        ready = tx.workers.get(worker.id)
        [attempt] = tx.attempts.search(job.id)
    assert ready is not None and ready.state is WorkerState.READY and ready.jobs_executed == 1
    assert (attempt.state, attempt.task_id, attempt.exit_code) == (AttemptState.SUCCEEDED, "t-1", 0)
    assert _kinds(store, job) == ["JobQueued", "JobStarted", "JobSucceeded"]


def test_a_failure_with_attempts_left_retries(store: Store, clock: FixedClock) -> None:
    job, worker = waiting_job(store, clock, max_attempts=2), ready_worker(store, clock)
    queued(store, clock, job)
    claim = claim_attempt(store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t")
    assert claim.job is not None
    retried = finish_attempt(
        store, clock, job=claim.job, worker_id=worker.id, outcome=Outcome(exit_code=3)
    )
    assert retried is not None
    stored = _read(store, job)
    assert (stored.state, stored.attempt, stored.worker_id) == (JobState.PENDING, 2, None)
    assert stored.next_attempt_at is not None and stored.exit_code == 3
    with store.reading() as tx:
        [first] = tx.attempts.search(job.id)
    assert first.state is AttemptState.FAILED
    # A finish of the old attempt, arriving late, changes nothing.
    late = finish_attempt(
        store, clock, job=claim.job, worker_id=worker.id, outcome=Outcome(exit_code=0)
    )
    assert late is None and _read(store, job).state is JobState.PENDING
    assert _kinds(store, job) == ["JobQueued", "JobStarted", "JobRetryScheduled"]


def test_cancel_then_retry_by_hand(store: Store, clock: FixedClock) -> None:
    job = waiting_job(store, clock)
    queued(store, clock, job)
    cancelled = cancel_job(store, clock, job.id, actor="user:t")
    assert cancelled.state is JobState.CANCELLED
    with pytest.raises(JobNotCancellable):
        cancel_job(store, clock, job.id, actor="user:t")
    publisher = RecordingPublisher()
    retried = retry_job(store, clock, publisher, job.id, actor="user:t")
    assert (retried.state, retried.attempt) == (JobState.PENDING, 2)
    assert [(p.job_id, p.attempt) for p in publisher.published] == [(job.id, 2)]
    with store.reading() as tx:
        [first] = tx.attempts.search(job.id)
    assert first.state is AttemptState.CANCELLED
    assert _kinds(store, job) == [
        "JobQueued",
        "JobCancelRequested",
        "JobCancelled",
        "JobRetryScheduled",
    ]


def test_a_silent_worker_is_lost_and_its_job_requeued(store: Store, clock: FixedClock) -> None:
    job, worker = waiting_job(store, clock), ready_worker(store, clock)
    queued(store, clock, job)
    assert claim_attempt(store, clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t")
    clock.advance(120)
    publisher = RecordingPublisher()
    report = reap_stale_workers(store, clock, publisher, stale_after_s=60, lost_requeues=1)
    assert [w.id for w in report.lost_workers] == [worker.id]
    assert [j.attempt for j in report.requeued] == [2]
    assert [p.attempt for p in publisher.published] == [2]
    with store.reading() as tx:
        lost = tx.workers.get(worker.id)
        [first] = tx.attempts.search(job.id)
    assert lost is not None and lost.state is WorkerState.LOST
    assert first.state is AttemptState.LOST
    assert _kinds(store, job)[-1] == "JobRequeued"


def test_a_worker_heartbeats_drains_and_terminates(store: Store, clock: FixedClock) -> None:
    worker = ready_worker(store, clock)
    clock.advance(5)
    held = uuid.uuid4()
    report = WorkerReport((held,), pending_outcomes=1)
    assert not heartbeat(store, clock, worker.id, report=lambda: report).should_stop
    with store.reading() as tx:
        seen = tx.workers.get(worker.id)
    assert seen is not None and seen.last_heartbeat == clock.now()
    assert (seen.reported_jobs, seen.pending_outcomes) == ((held,), 1)
    assert drain_worker(store, clock, worker.id, actor="user:t").state is WorkerState.DRAINING
    assert heartbeat(store, clock, worker.id).should_stop
    assert terminate_worker(store, clock, worker.id, reason="drained")
    assert not terminate_worker(store, clock, worker.id, reason="again")
    with store.reading() as tx:
        kinds = [e.event_type for e in tx.events.search(EventQuery(aggregate_ids=[worker.id]))]
    assert kinds == ["WorkerDraining", "WorkerTerminated"]


def test_many_confirmations_queue_once_each(store: Store, clock: FixedClock) -> None:
    jobs = [waiting_job(store, clock) for _ in range(3)]
    confirmations = [Confirmation(j.id, 1, f"t-{n}", QUEUE, None) for n, j in enumerate(jobs)]
    assert confirm_queued(store, clock, confirmations) == 3
    assert confirm_queued(store, clock, confirmations) == 0  # late duplicates
    assert {_read(store, j).state for j in jobs} == {JobState.QUEUED}


def test_a_transition_whose_guard_fails_writes_nothing(store: Store, clock: FixedClock) -> None:
    job = waiting_job(store, clock)
    stale = replace(job, attempt=7)
    change = transitions.cancel(stale, actor="user:t", now=clock.now())
    with store.transaction() as tx:
        assert not tx.apply(change)
    assert _read(store, job).state is JobState.PENDING
    assert _kinds(store, job) == []


def test_repeated_publish_failures_record_one_event(store: Store, clock: FixedClock) -> None:
    job = waiting_job(store, clock)
    job = replace(job, queue="hodei.local")
    down = RecordingPublisher(down=True)
    for _ in range(3):
        assert publish_jobs(store, clock, down, [job]) == [job]
    assert _kinds(store, job) == ["JobPublishFailed"]
    with store.reading() as tx:
        assert tx.events.newest_types([job.id, uuid.uuid4()]) == {job.id: "JobPublishFailed"}


def test_jobs_are_found_by_a_range_of_ids(store: Store, clock: FixedClock) -> None:
    ids = [uuid.UUID(f"abcdef12-0000-4000-8000-00000000000{n}") for n in (1, 2)]
    for job_id in ids:
        job = replace(waiting_job(store, clock), id=job_id, idempotency_key=None)
        with store.transaction() as tx:
            tx.jobs.add(job)
    low, high = uuid.UUID("abcdef12" + "0" * 24), uuid.UUID("abcdef12" + "f" * 24)
    with store.reading() as tx:
        assert tx.jobs.ids_between(low, high, limit=5) == ids
        assert tx.jobs.ids_between(low, high, limit=1) == ids[:1]
        assert tx.jobs.ids_between(ids[1], high, limit=5) == ids[1:]


def test_a_range_of_ids_sees_a_job_added_after_an_earlier_lookup(
    store: Store, clock: FixedClock
) -> None:
    """The same lookup again, in one transaction, after a job is added: read afresh."""
    low, high = uuid.UUID("fedcba98" + "0" * 24), uuid.UUID("fedcba98" + "f" * 24)
    job = replace(
        waiting_job(store, clock),
        id=uuid.UUID("fedcba98-0000-4000-8000-000000000001"),
        idempotency_key=None,
    )
    with store.transaction() as tx:
        assert tx.jobs.ids_between(low, high, limit=2) == []
        tx.jobs.add(job)
        assert tx.jobs.ids_between(low, high, limit=2) == [job.id]


def test_workers_are_found_by_a_range_of_ids(store: Store, clock: FixedClock) -> None:
    ids = [uuid.UUID(f"abcdef12-0000-4000-8000-00000000000{n}") for n in (1, 2)]
    template = ready_worker(store, clock)  # a third, elsewhere in the id space
    with store.transaction() as tx:
        for worker_id in ids:
            tx.workers.add(replace(template, id=worker_id))
    low, high = uuid.UUID("abcdef12" + "0" * 24), uuid.UUID("abcdef12" + "f" * 24)
    with store.reading() as tx:
        assert tx.workers.ids_between(low, high, limit=5) == ids
        assert tx.workers.ids_between(low, high, limit=1) == ids[:1]
        assert tx.workers.ids_between(ids[1], high, limit=5) == ids[1:]


# Moved from test_claim_and_finish.py (there on SQLite and PostgreSQL only).
def test_a_lost_claim_writes_nothing(store: Store, clock: FixedClock) -> None:
    first, second = ready_worker(store, clock), ready_worker(store, clock)
    job = queued(store, clock, waiting_job(store, clock))
    assert _claim(store, clock, job, first, task_id="t-1") is not None
    events = len(_kinds(store, job))
    assert _claim(store, clock, job, second, task_id="t-2") is None
    assert _read(store, job).worker_id == first.id
    assert _attempt(store, job) == (AttemptState.RUNNING, "t-1")
    assert _worker(store, second).state is WorkerState.READY
    assert len(_kinds(store, job)) == events


def test_the_worker_is_ready_again_only_when_its_last_job_ends(
    store: Store, clock: FixedClock
) -> None:
    worker = ready_worker(store, clock)
    one, two = (
        _claim(store, clock, queued(store, clock, waiting_job(store, clock)), worker)
        for _ in range(2)
    )
    assert one is not None and two is not None
    assert _finish(store, clock, one, worker) is not None
    after_one = _worker(store, worker)
    assert (after_one.state, after_one.jobs_executed, after_one.running_jobs) == (
        WorkerState.BUSY,
        1,
        1,
    )
    ended = _finish(store, clock, two, worker, exit_code=3)
    assert ended is not None and ended.state is JobState.FAILED
    after_two = _worker(store, worker)
    assert (after_two.state, after_two.jobs_executed, after_two.running_jobs) == (
        WorkerState.READY,
        2,
        0,
    )
    assert after_two.current_job_id is None
    assert _attempt(store, one)[0] is AttemptState.SUCCEEDED
    assert _attempt(store, two)[0] is AttemptState.FAILED
    with store.reading() as tx:
        [last] = tx.events.search(EventQuery(aggregate_ids=[two.id], event_types=["JobFailed"]))
    assert last.correlation_id == two.correlation_id
    assert (last.payload["exit_code"], last.payload["duration_ms"]) == (3, 5)
    assert _read(store, two).exit_code == 3


def test_a_finish_by_another_worker_writes_nothing(store: Store, clock: FixedClock) -> None:
    worker, other = ready_worker(store, clock), ready_worker(store, clock)
    claimed = _claim(store, clock, queued(store, clock, waiting_job(store, clock)), worker)
    assert claimed is not None
    events = len(_kinds(store, claimed))
    assert _finish(store, clock, claimed, other) is None
    assert _read(store, claimed).state is JobState.RUNNING
    assert _attempt(store, claimed)[0] is AttemptState.RUNNING
    assert _worker(store, other).jobs_executed == 0
    assert len(_kinds(store, claimed)) == events
    # A message for attempt 1 of a job at attempt 2.
    later = queued(store, clock, waiting_job(store, clock, attempt=2))
    assert _claim(store, clock, later, worker) is None
    assert _finish(store, clock, replace(claimed, id=uuid.uuid4()), worker) is None


def test_confirming_one_job_queues_it_with_its_attempt_and_event(
    store: Store, clock: FixedClock
) -> None:
    job = waiting_job(store, clock, correlation_id="order-7")
    assert _confirm(store, clock, job) == 1
    stored = _read(store, job)
    assert stored.state is JobState.QUEUED and stored.queued_at == clock.now()
    assert _attempt(store, job) == (AttemptState.QUEUED, f"t-{job.id}")
    with store.reading() as tx:
        [event] = tx.events.search(EventQuery(aggregate_ids=[job.id]))
    assert (event.event_type, event.correlation_id) == ("JobQueued", "order-7")
    assert event.payload["provider"] == "local" and event.payload["selection"] == "only"
    assert (event.payload["old_state"], event.payload["new_state"]) == ("PENDING", "QUEUED")


def test_a_late_or_stale_confirmation_writes_nothing(store: Store, clock: FixedClock) -> None:
    job = waiting_job(store, clock)
    assert _confirm(store, clock, job, attempt=2) == 0  # not the job's attempt
    assert _read(store, job).state is JobState.PENDING
    assert _confirm(store, clock, job) == 1
    assert _confirm(store, clock, job) == 0  # already QUEUED: no second attempt row or event
    assert _kinds(store, job) == ["JobQueued"]


def test_many_confirmations_take_the_set_based_path_alike(store: Store, clock: FixedClock) -> None:
    jobs = [waiting_job(store, clock) for _ in range(3)]
    assert _confirm(store, clock, *jobs) == 3
    for job in jobs:
        assert _read(store, job).state is JobState.QUEUED
        assert _attempt(store, job) == (AttemptState.QUEUED, f"t-{job.id}")
        with store.reading() as tx:
            [event] = tx.events.search(EventQuery(aggregate_ids=[job.id]))
        assert event.payload["provider"] == "local"


def test_a_claim_before_the_confirmation_queues_then_starts(
    store: Store, clock: FixedClock
) -> None:
    worker, job = ready_worker(store, clock), waiting_job(store, clock)
    assert _claim(store, clock, job, worker, task_id="t-early") is not None
    assert _kinds(store, job) == ["JobQueued", "JobStarted"]
    assert _attempt(store, job) == (AttemptState.RUNNING, "t-early")
    assert _confirm(store, clock, job) == 0  # the publisher's confirmation, arriving late


def _unschedulable(store: Store, clock: FixedClock, age: timedelta) -> Job:
    """A PENDING job no provider can take (a label none has), created ``age`` ago."""
    at = clock.now() - age
    spec = JobSpec.create(["true"], name="u", labels={"gpu": "true"})
    job = Job(uuid.uuid4(), "u", JobState.PENDING, spec, at, at, attempt=1, queue=None)
    with store.transaction() as tx:
        tx.jobs.add(job)
    return job


# Moved from test_provider_registry.py (there on SQLite and PostgreSQL only).
def test_rescheduling_takes_the_oldest_waiting_jobs_first(store: Store, clock: FixedClock) -> None:
    oldest, older, newest = (
        _unschedulable(store, clock, timedelta(minutes=m)) for m in (30, 20, 10)
    )
    for _ in range(3):  # newer PENDING jobs that have a queue must not crowd them out
        waiting_job(store, clock)
    publisher = RecordingPublisher()
    report = reschedule_unschedulable(store, clock, publisher, queue_timeout_s=60, limit=2)
    assert report.failed == [oldest.id, older.id]
    assert _read(store, newest).state is JobState.PENDING
    stored = _read(store, oldest)
    assert (stored.state, stored.failure_reason) == (JobState.FAILED, "no_provider")
    assert _kinds(store, oldest)[-1] == "JobFailed"


# Moved from test_maintenance.py (there on PostgreSQL, with a real worker).
def test_purge_deletes_old_finished_jobs_with_their_records(
    store: Store, clock: FixedClock
) -> None:
    def finished(output: str) -> Job:
        job, worker = queued(store, clock, waiting_job(store, clock)), ready_worker(store, clock)
        claimed = _claim(store, clock, job, worker)
        assert claimed is not None
        with store.transaction() as tx:
            tx.logs.append([LogLine(job.id, 1, "stdout", output, clock.now())])
        assert _finish(store, clock, claimed, worker) is not None
        return job

    old = finished("old")
    clock.advance(40 * 86400)
    recent = finished("recent")
    assert purge(store, clock, retention_days=30) == 1
    assert purge(store, clock, retention_days=30) == 0
    with store.reading() as tx:
        assert tx.jobs.get(old.id) is None
        assert tx.attempts.search(old.id) == []
        assert tx.logs.read(old.id) == []
        assert tx.events.search(EventQuery(aggregate_ids=[old.id])) == []
        assert [ln.line for ln in tx.logs.read(recent.id)] == ["recent"]
        assert len(tx.attempts.search(recent.id)) == 1
    assert _kinds(store, recent) == ["JobQueued", "JobStarted", "JobSucceeded"]


def _provider(store: Store, clock: FixedClock) -> Provider:
    now = clock.now()
    provider = Provider(uuid.uuid4(), f"p-{uuid.uuid4().hex[:6]}", "local", now, now)
    with store.transaction() as tx:
        tx.providers.add(provider)
    return provider


def _provider_now(store: Store, provider: Provider) -> Provider:
    with store.reading() as tx:
        found = tx.providers.get(provider.id)
    assert found is not None
    return found


def _provider_events(store: Store, provider: Provider) -> list[DomainEvent]:
    with store.reading() as tx:
        return tx.events.search(EventQuery(aggregate_ids=[provider.id]))


def test_a_provider_status_change_holds_only_from_the_status_it_was_read_in(
    store: Store, clock: FixedClock
) -> None:
    provider = _provider(store, clock)
    drain = transitions.set_provider_status(
        provider, ProviderStatus.DRAINING, actor="user:t", now=clock.now()
    )
    assert store.apply(drain)
    assert not store.apply(drain)  # the status is no longer the one it was read in
    assert _provider_now(store, provider).status is ProviderStatus.DRAINING
    [event] = _provider_events(store, provider)
    assert (event.event_type, event.actor) == ("ProviderStatusChanged", "user:t")
    assert (event.payload["old_status"], event.payload["new_status"]) == ("ACTIVE", "DRAINING")
    assert event.payload["provider"] == provider.name


def test_a_health_check_writes_an_event_only_when_the_health_changes(
    store: Store, clock: FixedClock
) -> None:
    provider = _provider(store, clock)
    sick = transitions.record_health(
        provider, ProviderHealth.UNHEALTHY, "no engine", now=clock.now()
    )
    assert store.apply(sick)
    stored = _provider_now(store, provider)
    assert (stored.health, stored.health_message) == (ProviderHealth.UNHEALTHY, "no engine")
    assert stored.health_checked_at == clock.now()
    clock.advance(10)
    again = transitions.record_health(
        stored, ProviderHealth.UNHEALTHY, "no engine", now=clock.now()
    )
    assert again.events == () and store.apply(again)
    assert _provider_now(store, provider).health_checked_at == clock.now()
    [event] = _provider_events(store, provider)
    assert (event.event_type, event.payload["old"], event.payload["new"]) == (
        "ProviderHealthChanged",
        str(provider.health),
        "UNHEALTHY",
    )


# What test_provider_extras.py checked through a real worker: the history stays readable.
def test_deleting_a_provider_keeps_its_jobs_and_workers_history(
    store: Store, clock: FixedClock
) -> None:
    provider = _provider(store, clock)
    job, worker = waiting_job(store, clock), ready_worker(store, clock)
    with store.transaction() as tx:
        tx.jobs.add(replace(job, id=uuid.uuid4(), provider_id=provider.id, queue="hodei.p"))
        tx.workers.add(replace(worker, id=uuid.uuid4(), provider_id=provider.id))
    with store.transaction() as tx:
        [its_job] = [j for j in tx.jobs.search(JobQuery(provider_id=provider.id))]
        [its_worker] = [w for w in tx.workers.search(limit=1000) if w.provider_id == provider.id]
        tx.providers.delete(provider.id)
    with store.reading() as tx:
        assert tx.providers.get(provider.id) is None
        kept_job, kept_worker = tx.jobs.get(its_job.id), tx.workers.get(its_worker.id)
    assert kept_job is not None and (kept_job.provider_id, kept_job.queue) == (None, "hodei.p")
    assert kept_worker is not None and kept_worker.provider_id is None
    assert kept_worker.queue == its_worker.queue


def test_a_schedule_pauses_and_resumes_once_each(store: Store, clock: FixedClock) -> None:
    name = f"s-{uuid.uuid4().hex[:6]}"
    create_schedule(
        store,
        clock,
        name=name,
        cron_expression="0 3 * * *",
        spec=JobSpec.create("true"),
        actor="user:t",
    )
    with store.reading() as tx:
        schedule = tx.schedules.get_by_name(name)
    assert schedule is not None and not schedule.paused
    pause = transitions.pause_schedule(schedule, actor="user:t", now=clock.now())
    assert store.apply(pause)
    assert not store.apply(pause)  # it was read active: a second pause writes nothing
    with store.reading() as tx:
        paused = tx.schedules.get_by_name(name)
    assert paused is not None and paused.paused and paused.next_fire_at is None
    tick = clock.now() + timedelta(hours=1)
    resume = transitions.resume_schedule(paused, next_fire_at=tick, actor="user:t", now=clock.now())
    assert store.apply(resume)
    assert not store.apply(resume)
    with store.reading() as tx:
        active = tx.schedules.get_by_name(name)
        events = tx.events.search(EventQuery(aggregate_ids=[schedule.id]))
    assert active is not None and not active.paused and active.next_fire_at == tick
    assert [e.event_type for e in events] == [
        "ScheduleCreated",
        "SchedulePaused",
        "ScheduleResumed",
    ]
