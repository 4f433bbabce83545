"""The per-job statements run on psycopg directly (store/driver_statement.py): they must
give what SQLAlchemy's own execution gives, and fail the way it fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import DatabaseUnavailable
from hodei.services.ports.store import EventQuery
from hodei.store import statements
from hodei.store.driver_statement import DriverStatement, driver_statement
from hodei.store.engine import create_engine
from hodei.store.sql_store import SqlStore
from hodei.store.tables import jobs

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlStore]:
    """A store whose pool holds a single connection, so every unit of work reuses it."""
    store = SqlStore(create_engine(postgres_url, pool_size=1))
    yield store
    store.engine.dispose()


def _job() -> Job:
    now = datetime.now(UTC)
    spec = JobSpec.create(["echo", "é"], name="driver", env={"A": "1"}, labels={"tier": "x"})
    return Job(
        uuid4(),
        "driver",
        JobState.PENDING,
        spec,
        correlation_id="corr-1",
        created_at=now,
        updated_at=now,
        next_attempt_at=now + timedelta(seconds=5),
    )


def _created(job: Job) -> DomainEvent:
    return DomainEvent("JobCreated", "job", job.id, "sdk:test", job.created_at, {"k": [1, "é"]})


def test_a_row_reads_back_as_sqlalchemy_reads_it(store: SqlStore) -> None:
    job = _job()
    with store.single_write() as tx:
        tx.jobs.create(job, [_created(job)])  # the driver path writes it
    select = statements.select_by(jobs, "id")
    with store.reading() as tx:
        expected = dict(tx.connection.execute(select, {"w_id": job.id}).mappings().one())
        got = DriverStatement(select, tx.connection.dialect).first(tx.connection, {"w_id": job.id})
        assert tx.jobs.get(job.id) == job
    assert got == expected
    # The same types, not only equal values: UTC datetimes, the spec as a dict, None kept.
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
    assert got["created_at"].tzinfo is UTC and got["started_at"] is None


def test_the_constants_of_a_statement_are_sent_with_it(store: SqlStore) -> None:
    job = _job()
    with store.single_write() as tx:
        tx.jobs.create(job, [_created(job)])
    # The state names are literals and the JSON path a constant parameter of the statement.
    query = sa.select(jobs.c.id, jobs.c.spec["env"]["A"].as_string().label("a")).where(
        statements.one_of(jobs.c.state, ["PENDING"]), jobs.c.id == sa.bindparam("w_id")
    )
    with store.reading() as tx:
        rows = DriverStatement(query, tx.connection.dialect).all(tx.connection, {"w_id": job.id})
    assert rows == [{"id": job.id, "a": "1"}]


def test_a_failed_statement_raises_what_sqlalchemy_raises(store: SqlStore) -> None:
    job = _job()
    with store.single_write() as tx:
        tx.jobs.create(job, [_created(job)])
    with pytest.raises(sa.exc.IntegrityError, match="pk_jobs"), store.single_write() as tx:
        tx.jobs.create(job, [_created(job)])  # the same job id again


def test_a_lost_connection_is_invalidated_and_reported_unavailable(store: SqlStore) -> None:
    with store.reading() as tx:
        backend = tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = create_engine(store.engine.url.render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend})
    admin.dispose()

    job = _job()
    with pytest.raises(DatabaseUnavailable), store.single_write() as tx:
        try:
            tx.jobs.create(job, [_created(job)])
        finally:
            # Invalidated as SQLAlchemy would: the pool never hands the dead one out again.
            assert tx.connection.invalidated
    with store.single_write() as tx:  # a new connection
        tx.jobs.create(job, [_created(job)])
    with store.reading() as tx:
        assert tx.jobs.get(job.id) == job


def test_only_postgresql_takes_the_driver_path(tmp_path: Path, store: SqlStore) -> None:
    sqlite = SqlStore(create_engine(f"sqlite:///{tmp_path}/d.db"))
    select = statements.select_by(jobs, "id")
    with sqlite.engine.connect() as conn:
        assert driver_statement(select, conn) is None
    with store.reading() as tx:
        assert driver_statement(select, tx.connection) is driver_statement(select, tx.connection)
    sqlite.dispose()


def test_a_batch_is_copied_in_with_its_triggers_fired_once(store: SqlStore) -> None:
    batch = [_job() for _ in range(3)]
    created = [_created(j) for j in batch]
    counts = sa.text("SELECT count(*), sum(delta) FROM state_counts WHERE state = 'PENDING'")
    with store.reading() as tx:
        rows_before, pending_before = tx.connection.execute(counts).one()
    with store.transaction() as tx:
        tx.jobs.add(*batch)
        tx.events.add(*created)
    with store.reading() as tx:
        assert [tx.jobs.get(j.id) for j in batch] == batch
        stored = [e for j in batch for e in tx.events.search(EventQuery(aggregate_ids=[j.id]))]
        rows_after, pending_after = tx.connection.execute(counts).one()
    # The events keep the batch's order in their ids, and their payloads as given.
    assert [e.event_id for e in sorted(stored, key=lambda e: e.id or 0)] == [
        e.event_id for e in created
    ]
    assert stored[0].payload == {"k": [1, "é"]}
    # The statement trigger counted the three jobs, as one row.
    assert (rows_after - rows_before, (pending_after or 0) - (pending_before or 0)) == (1, 3)


def test_a_batch_that_breaks_a_constraint_is_not_stored_at_all(store: SqlStore) -> None:
    first = _job()
    with store.single_write() as tx:
        tx.jobs.create(first, [_created(first)])
    second = _job()
    with pytest.raises(sa.exc.IntegrityError, match="pk_jobs"), store.transaction() as tx:
        tx.jobs.add(second, first)  # the first one again
    with store.reading() as tx:
        assert tx.jobs.get(second.id) is None
