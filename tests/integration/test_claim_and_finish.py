"""Queue, claim and finish write the job, its attempt, the worker and the event all or
nothing, on SQLite (one statement after another) and on PostgreSQL (one combined
statement)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hodei.domain.records import Job, Worker
from hodei.domain.states import AttemptState, JobState, WorkerState
from hodei.sdk import Client
from hodei.services import gates
from hodei.services.dispatch import Confirmation, confirm_queued
from hodei.services.execution import Outcome, claim_attempt, finish_attempt
from hodei.services.workers import create_worker_token, register_worker
from tests.integration.operators_plant import plant_job
from tests.support import StoreWithHook, job_events, wait_for


def _worker(client: Client) -> Worker:
    c = client.container
    token = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=60, actor="sdk:t")
    return register_worker(c.store, c.clock, token.secret, infra_ref="test:none")


def _queued(client: Client) -> Job:
    return plant_job(client, state=JobState.QUEUED, correlation_id="order-7")


def _claim(client: Client, job: Job, worker: Worker, task_id: str = "t-1") -> Job | None:
    c = client.container
    claim = claim_attempt(
        c.store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id=task_id
    )
    return claim.job if claim.won else None


def _finish(client: Client, job: Job, worker: Worker, exit_code: int = 0) -> Job | None:
    c = client.container
    return finish_attempt(
        c.store, c.clock, job=job, worker_id=worker.id, outcome=Outcome(exit_code, duration_ms=5)
    )


def _worker_now(client: Client, worker: Worker) -> Worker:
    with client.container.store.transaction() as tx:
        found = tx.workers.get(worker.id)
    assert found is not None
    return found


def _attempt_state(client: Client, job: Job) -> tuple[AttemptState, str | None]:
    with client.container.store.transaction() as tx:
        [attempt] = tx.attempts.search(job.id)
    return attempt.state, attempt.task_id


def test_a_claim_starts_the_job_its_attempt_and_the_worker(client: Client) -> None:
    worker, job = _worker(client), _queued(client)
    claimed = _claim(client, job, worker)
    assert claimed is not None
    stored = client.get(job.id)
    assert (stored.state, stored.worker_id) == (JobState.RUNNING, worker.id)
    assert stored.started_at is not None and stored.deadline_at is not None
    assert stored.deadline_at - stored.started_at == timedelta(seconds=job.spec.timeout_s)
    assert claimed == stored  # the claim hands the runner the job as stored, unread
    assert _attempt_state(client, job) == (AttemptState.RUNNING, "t-1")
    busy = _worker_now(client, worker)
    assert (busy.state, busy.current_job_id) == (WorkerState.BUSY, job.id)
    started = job_events(client, job.id)[-1]
    assert (started.event_type, started.correlation_id) == ("JobStarted", "order-7")
    assert started.payload["worker_id"] == str(worker.id)


def test_a_lost_claim_writes_nothing(client: Client) -> None:
    first, second, job = _worker(client), _worker(client), _queued(client)
    assert _claim(client, job, first, task_id="t-1") is not None
    events = len(job_events(client, job.id))
    assert _claim(client, job, second, task_id="t-2") is None
    assert client.get(job.id).worker_id == first.id
    assert _attempt_state(client, job) == (AttemptState.RUNNING, "t-1")
    assert _worker_now(client, second).state is WorkerState.READY
    assert len(job_events(client, job.id)) == events


def test_the_worker_is_ready_again_only_when_its_last_job_ends(client: Client) -> None:
    worker = _worker(client)
    one, two = (_claim(client, _queued(client), worker) for _ in range(2))
    assert one is not None and two is not None

    assert _finish(client, one, worker) is not None
    after_one = _worker_now(client, worker)
    assert (after_one.state, after_one.jobs_executed, after_one.running_jobs) == (
        WorkerState.BUSY,
        1,
        1,
    )

    ended = _finish(client, two, worker, exit_code=3)
    assert ended is not None and ended.state is JobState.FAILED
    after_two = _worker_now(client, worker)
    assert (after_two.state, after_two.jobs_executed, after_two.running_jobs) == (
        WorkerState.READY,
        2,
        0,
    )
    assert after_two.current_job_id is None

    assert _attempt_state(client, one)[0] is AttemptState.SUCCEEDED
    assert _attempt_state(client, two)[0] is AttemptState.FAILED
    last = job_events(client, two.id)[-1]
    assert (last.event_type, last.correlation_id) == ("JobFailed", "order-7")
    assert (last.payload["exit_code"], last.payload["duration_ms"]) == (3, 5)
    assert client.get(two.id).exit_code == 3


def test_a_finish_by_another_worker_writes_nothing(client: Client) -> None:
    worker, other = _worker(client), _worker(client)
    claimed = _claim(client, _queued(client), worker)
    assert claimed is not None
    events = len(job_events(client, claimed.id))

    assert _finish(client, claimed, other) is None
    assert client.get(claimed.id).state is JobState.RUNNING
    assert _attempt_state(client, claimed)[0] is AttemptState.RUNNING
    assert _worker_now(client, other).jobs_executed == 0
    assert len(job_events(client, claimed.id)) == events

    stale = _claim(client, plant_job(client, state=JobState.QUEUED, attempt=2), worker)
    assert stale is None  # a message for attempt 1 of a job at attempt 2
    assert _finish(client, Job(**{**claimed.__dict__, "id": uuid4()}), worker) is None


def _pending(client: Client) -> Job:
    return plant_job(client, state=JobState.PENDING, correlation_id="order-7")


def _confirm(client: Client, *jobs: Job, attempt: int = 1) -> int:
    c = client.container
    return confirm_queued(
        c.store,
        c.clock,
        [Confirmation(j.id, attempt, f"t-{j.id}", "hodei.local", "order-7", "only") for j in jobs],
    )


def _kinds(client: Client, job: Job) -> list[str]:
    return [e.event_type for e in job_events(client, job.id)]


def test_confirming_one_job_queues_it_with_its_attempt_and_event(client: Client) -> None:
    job = _pending(client)
    assert _confirm(client, job) == 1
    stored = client.get(job.id)
    assert stored.state is JobState.QUEUED and stored.queued_at is not None
    assert _attempt_state(client, job) == (AttemptState.QUEUED, f"t-{job.id}")
    queued = job_events(client, job.id)[-1]
    assert (queued.event_type, queued.correlation_id) == ("JobQueued", "order-7")
    assert queued.payload["provider"] == "local" and queued.payload["selection"] == "only"
    assert (queued.payload["old_state"], queued.payload["new_state"]) == ("PENDING", "QUEUED")


def test_a_late_or_stale_confirmation_writes_nothing(client: Client) -> None:
    job = _pending(client)
    assert _confirm(client, job, attempt=2) == 0  # not the job's attempt
    assert client.get(job.id).state is JobState.PENDING
    assert _confirm(client, job) == 1
    assert _confirm(client, job) == 0  # already QUEUED: no second attempt row or event
    assert _kinds(client, job).count("JobQueued") == 1


def test_many_confirmations_take_the_set_based_path_alike(client: Client) -> None:
    jobs = [_pending(client) for _ in range(3)]
    assert _confirm(client, *jobs) == 3
    for job in jobs:
        assert client.get(job.id).state is JobState.QUEUED
        assert _attempt_state(client, job) == (AttemptState.QUEUED, f"t-{job.id}")
        assert job_events(client, job.id)[-1].payload["provider"] == "local"


def test_a_claim_before_the_confirmation_queues_then_starts(client: Client) -> None:
    worker, job = _worker(client), _pending(client)
    assert _claim(client, job, worker, task_id="t-early") is not None
    assert _kinds(client, job)[-2:] == ["JobQueued", "JobStarted"]
    assert _attempt_state(client, job) == (AttemptState.RUNNING, "t-early")
    assert _confirm(client, job) == 0  # the publisher's confirmation, arriving late


@pytest.mark.postgres
def test_a_claim_that_races_the_confirmation_still_wins(pg_client: Client) -> None:
    # On SQLite the claim's transaction holds the write lock, so this cannot happen there.
    worker, job = _worker(pg_client), _pending(pg_client)
    confirmed: list[int] = []

    def confirm_after_a_miss(tx: Any) -> None:
        # The publisher's confirmation commits, on a connection of its own, just after
        # the claim's first try found the job still PENDING.
        start = tx.runs.start

        def start_then_confirm(*args: Any, **kwargs: Any) -> Job | None:
            started = start(*args, **kwargs)
            if started is None and not confirmed:
                confirmed.append(_confirm(pg_client, job))
            return started

        tx.runs.start = start_then_confirm

    c = pg_client.container
    store = StoreWithHook(c.store, confirm_after_a_miss)
    claim = claim_attempt(
        store, c.clock, job_id=job.id, attempt=1, worker_id=worker.id, task_id="t"
    )
    assert confirmed == [1]  # the race did happen
    assert claim.won, claim.reason
    assert _kinds(pg_client, job)[-2:] == ["JobQueued", "JobStarted"]


@pytest.mark.postgres
def test_two_jobs_of_one_worker_ending_at_once_leave_it_ready(pg_client: Client) -> None:
    # Nothing is locked first: the worker row's updates queue behind each other, and the
    # second counts from what the first left. Repeated, so an overlap surely happens.
    worker = _worker(pg_client)
    for _ in range(15):
        claimed = [_claim(pg_client, _queued(pg_client), worker) for _ in range(2)]
        assert all(claimed)
        both = threading.Barrier(2)

        def finish(job: Job | None, together: threading.Barrier) -> None:
            assert job is not None
            together.wait()
            _finish(pg_client, job, worker)

        threads = [threading.Thread(target=finish, args=(job, both)) for job in claimed]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        now = _worker_now(pg_client, worker)
        assert (now.state, now.running_jobs, now.current_job_id) == (WorkerState.READY, 0, None)


# -- what a finish tells the gates ----------------------------------------------------------


def _statements_of(client: Client, action: Any) -> list[str]:
    """The SQL statements ``action()`` sends through the client's engine."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = client.container.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return sent


def test_the_end_of_a_job_nobody_runs_after_reads_nothing_for_the_gates(client: Client) -> None:
    worker = _worker(client)
    plain, parent = (_claim(client, _queued(client), worker) for _ in range(2))
    assert plain is not None and parent is not None
    child = plant_job(client, state=JobState.PENDING, held=True)
    with client.container.store.transaction() as tx:
        tx.gates.add_dependencies([(child.id, parent.id)])
    c = client.container

    ended = _finish(client, plain, worker)
    assert ended is not None and not ended.has_dependents
    assert (
        _statements_of(client, lambda: gates.after_end(c.store, c.clock, c.publisher, [ended]))
        == []
    )

    ended = _finish(client, parent, worker)
    assert ended is not None and ended.has_dependents  # set by the dependency, read back
    released: list[gates.Releases] = []
    _statements_of(
        client, lambda: released.append(gates.after_end(c.store, c.clock, c.publisher, [ended]))
    )
    assert [j.id for j in released[0].released] == [child.id]


def _waiting_on_a_lock(client: Client) -> bool:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with client.container.store.reading() as tx:
        return int(tx.connection.execute(query).scalar_one()) > 0


@pytest.mark.postgres
def test_a_finish_racing_a_new_dependent_of_its_job_returns_that_it_has_one(
    pg_client: Client,
) -> None:
    # The submit sets the parent's flag under the row's lock; the finish waits for that
    # commit and reads the row as it is then. (A lookup of job_dependencies inside the
    # finish would use the statement's snapshot, taken before the wait, and miss it.)
    worker = _worker(pg_client)
    parent = _claim(pg_client, _queued(pg_client), worker)
    assert parent is not None
    child = plant_job(pg_client, state=JobState.PENDING, held=True)
    finished: list[Job | None] = []
    with pg_client.container.store.transaction() as tx:
        tx.gates.add_dependencies([(child.id, parent.id)])
        finishing = threading.Thread(
            target=lambda: finished.append(_finish(pg_client, parent, worker))
        )
        finishing.start()
        wait_for(lambda: _waiting_on_a_lock(pg_client), message="the finish waits on the row")
    finishing.join(timeout=30)
    [ended] = finished
    assert ended is not None and ended.state is JobState.SUCCEEDED
    assert ended.has_dependents
