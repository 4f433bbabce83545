"""Races of the claim and the finish that only PostgreSQL can have (SQLite's write lock
serializes them). What the claim, the finish and the confirmation write, all or
nothing, is checked on the fake, SQLite and PostgreSQL alike in test_store_contract.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from hodei.domain.records import Job, Worker
from hodei.domain.states import JobState, WorkerState
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token, register_worker
from hodei.services.jobs import gates
from hodei.services.jobs.attempts import Outcome, claim_attempt, finish_attempt
from hodei.services.jobs.dispatch import Confirmation, confirm_queued
from tests.integration.operators_plant import plant_job
from tests.support import StoreWithHook, job_events, wait_for

pytestmark = [pytest.mark.postgres]


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
