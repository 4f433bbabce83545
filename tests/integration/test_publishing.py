"""Publishing in batches on Redis: every message reaches its queue and each job is
confirmed once; a batch Redis refuses confirms none of its jobs."""

from __future__ import annotations

from uuid import UUID

import pytest
import redis

from hodei import JobSpec, JobState
from hodei.sdk import Client
from hodei.services.jobs.dispatch import dispatch_pending
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.store import EventQuery

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Where a job of the default priority 5 waits on Redis: kombu keeps one list per
# priority step, ``<queue>\x06\x16<step>``, and hodei publishes priority p at step 9 - p.
LOCAL = "hodei.local\x06\x164"


def _submit(client: Client, n: int) -> list[UUID]:
    c = client.container
    specs = [JobSpec.create("true", name=f"batch-{i}") for i in range(n)]
    return [r.job.id for r in submit_jobs(c.store, c.clock, c.publisher, specs, actor="sdk:t")]


def _event_counts(client: Client, *types: str) -> dict[str, int]:
    with client.container.store.transaction() as tx:
        events = tx.events.search(EventQuery(event_types=types, limit=10_000))
    return {t: sum(1 for e in events if e.event_type == t) for t in types}


def test_several_batches_all_reach_the_queue_and_are_confirmed_once(pg_client: Client) -> None:
    ids = _submit(pg_client, 600)  # three batches of 250 messages or fewer
    broker = redis.Redis.from_url(pg_client.settings.broker_url)
    assert broker.llen(LOCAL) == 600
    assert {pg_client.get(i).state for i in ids} == {JobState.QUEUED}
    assert _event_counts(pg_client, "JobQueued") == {"JobQueued": 600}


def test_a_batch_redis_refuses_confirms_none_of_its_jobs(pg_client: Client) -> None:
    broker = redis.Redis.from_url(pg_client.settings.broker_url)
    broker.set(LOCAL, "not a list")  # every LPUSH of the batch fails: WRONGTYPE
    ids = _submit(pg_client, 3)
    assert {pg_client.get(i).state for i in ids} == {JobState.PENDING}
    counts = _event_counts(pg_client, "JobQueued", "JobPublishFailed")
    assert counts == {"JobQueued": 0, "JobPublishFailed": 3}

    broker.delete(LOCAL)
    c = pg_client.container
    with c.store.transaction() as tx:  # past the grace a fresh PENDING job gets
        for i in ids:
            tx.jobs.compare_and_set(
                i, states=[JobState.PENDING], updated_at=c.clock.now().replace(year=2000)
            )
    assert dispatch_pending(c.store, c.clock, c.publisher) == 3
    assert {pg_client.get(i).state for i in ids} == {JobState.QUEUED}
    assert broker.llen(LOCAL) == 3
