"""Creating a job: its row and events are written all or nothing, and a submit that
loses an idempotency-key race returns the job that won it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import JobNotFound
from hodei.sdk import Client
from hodei.services.jobs.submission import submit_jobs
from hodei.store.engine import create_engine
from hodei.store.sql_store import SqlStore
from tests.support import StoreWithHook


def _job() -> Job:
    now = datetime.now(UTC)
    spec = JobSpec.create("true", name="created")
    return Job(uuid4(), "created", JobState.PENDING, spec, created_at=now, updated_at=now)


def _created(job: Job) -> DomainEvent:
    return DomainEvent("JobCreated", "job", job.id, "sdk:test", job.created_at)


def test_a_job_and_its_events_are_created_all_or_nothing(client: Client) -> None:
    store = client.container.store
    first = _job()
    first_event = _created(first)
    with store.single_write() as tx:  # on PostgreSQL: no transaction around the write
        tx.jobs.create(first, [first_event])
    assert client.get(first.id) == first

    second = _job()
    # Its second event reuses an event id already stored, so that event cannot be written.
    clash = dataclasses.replace(_created(second), event_id=first_event.event_id)
    with pytest.raises(sa.exc.IntegrityError), store.single_write() as tx:
        tx.jobs.create(second, [_created(second), clash])
    with pytest.raises(JobNotFound):
        client.get(second.id)


def test_a_submit_that_loses_the_key_race_returns_the_winner(client: Client) -> None:
    c = client.container
    key = f"nightly-{uuid4()}"
    [winner] = submit_jobs(
        c.store, c.clock, c.publisher, [JobSpec.create("true", idempotency_key=key)], actor="a"
    )
    missed: list[str] = []

    def first_lookup_misses(tx: Any) -> None:
        # As it does while the submit that stored the key is still committing.
        lookup = tx.jobs.get_by_idempotency_key

        def lookup_after_a_miss(key: str) -> Job | None:
            if not missed:
                missed.append(key)
                return None
            return lookup(key)

        tx.jobs.get_by_idempotency_key = lookup_after_a_miss

    racing = StoreWithHook(c.store, first_lookup_misses)
    [loser] = submit_jobs(
        racing, c.clock, c.publisher, [JobSpec.create("echo", idempotency_key=key)], actor="b"
    )
    assert missed == [key]  # the race did happen: the insert met the stored key
    assert loser.existing and loser.job.id == winner.job.id


@pytest.fixture
def one_connection_store(postgres_url: str) -> Iterator[SqlStore]:
    """A store whose pool holds a single connection, so every unit of work reuses it."""
    store = SqlStore(create_engine(postgres_url, pool_size=1))
    yield store
    store.engine.dispose()


def _assert_transactional(store: SqlStore, connection: object) -> None:
    """A unit of work on ``connection`` that fails after its first write leaves nothing."""
    job = _job()
    with pytest.raises(RuntimeError), store.transaction() as tx:
        assert tx.connection.connection.dbapi_connection is connection  # the same one
        tx.jobs.add(job)
        raise RuntimeError("the unit of work fails after its first write")
    with store.reading() as tx:
        assert tx.jobs.get(job.id) is None


@pytest.mark.postgres
def test_a_transaction_on_a_connection_a_single_write_used_is_atomic_again(
    one_connection_store: SqlStore,
) -> None:
    # single_write puts its pooled connection in autocommit; the pool must take that
    # back, or a later transaction would commit statement by statement.
    with one_connection_store.single_write() as tx:
        used = tx.connection.connection.dbapi_connection
        assert used is not None and used.autocommit
    _assert_transactional(one_connection_store, used)


@pytest.mark.postgres
def test_a_single_write_whose_statement_fails_gives_back_a_transactional_connection(
    one_connection_store: SqlStore,
) -> None:
    store = one_connection_store
    job = _job()
    with store.single_write() as tx:
        tx.jobs.add(job)
    with pytest.raises(Exception, match=r"(?i)duplicate|unique"), store.single_write() as tx:
        used = tx.connection.connection.dbapi_connection
        tx.jobs.add(job)  # the same id again: the statement fails
    _assert_transactional(store, used)
