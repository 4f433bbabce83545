"""Creating a job: its row and events are written all or nothing, and a submit that
loses an idempotency-key race returns the job that won it."""

from __future__ import annotations

import contextlib
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
from hodei.services.submission import submit_jobs


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


class _KeyNotVisibleYet:
    """A store on which the first idempotency-key lookup misses, as it does while the
    submit that stored the key is still committing."""

    def __init__(self, client: Client) -> None:
        self._store = client.container.store
        self.missed = False

    @contextlib.contextmanager
    def _wrapped(self, unit: Any) -> Iterator[Any]:
        with unit as tx:
            lookup = tx.jobs.get_by_idempotency_key

            def first_lookup_misses(key: str) -> Job | None:
                if not self.missed:
                    self.missed = True
                    return None
                return lookup(key)

            tx.jobs.get_by_idempotency_key = first_lookup_misses
            yield tx

    def single_write(self) -> contextlib.AbstractContextManager[Any]:
        return self._wrapped(self._store.single_write())

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self._wrapped(self._store.transaction())

    def reading(self) -> contextlib.AbstractContextManager[Any]:
        return self._store.reading()


def test_a_submit_that_loses_the_key_race_returns_the_winner(client: Client) -> None:
    c = client.container
    key = f"nightly-{uuid4()}"
    [winner] = submit_jobs(
        c.store, c.clock, c.publisher, [JobSpec.create("true", idempotency_key=key)], actor="a"
    )
    racing = _KeyNotVisibleYet(client)
    [loser] = submit_jobs(
        racing, c.clock, c.publisher, [JobSpec.create("echo", idempotency_key=key)], actor="b"
    )
    assert racing.missed  # the race did happen: the insert met the stored key
    assert loser.existing and loser.job.id == winner.job.id
