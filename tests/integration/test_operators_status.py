"""``hodei status`` on SQLite and PostgreSQL: counts kept by the triggers agree with
the tables through inserts, updates, deletes and folds; queues, providers, tokens."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from hodei import JobState
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.services.operators.status import NO_PROVIDER
from hodei.settings import mask_url
from hodei.store import tables
from tests.integration.operators_plant import (
    HAPPY,
    now,
    plant_job,
    plant_token,
    plant_worker,
)
from tests.support import run_cli


def counted(c: Client, table: str) -> dict[str, int]:
    """The truth, by a full GROUP BY (what status avoids doing)."""
    with c.container.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT state, count(*) FROM {table} GROUP BY state"))
        return {state: int(n) for state, n in rows}


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def test_status_shows_jobs_queues_workers_providers_and_tokens(client: Client) -> None:
    done = client.submit("echo done")
    failed = client.submit("exit 1")
    client.wait(done.id, timeout=60)
    client.wait(failed.id, timeout=60)
    client.submit("true", labels={"gpu": "true"})  # PENDING with no provider
    plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(seconds=90)
    )
    starting = plant_worker(client, state=WorkerState.PROVISIONING, heartbeat_age=None)
    plant_token(client, starting, expires_in=timedelta(minutes=5))

    status = client.status()

    assert nonzero(status.jobs) == counted(client, "jobs")
    assert status.jobs["SUCCEEDED"] == 1 and status.jobs["FAILED"] == 1
    assert status.jobs["PENDING"] == 1 and status.jobs["QUEUED"] == 1
    assert nonzero(status.workers) == counted(client, "workers")
    assert status.total_jobs == 4
    queues = {q.provider: q for q in status.queues}
    assert (queues["local"].queued, queues["local"].pending) == (1, 0)
    assert queues["local"].oldest_queued_age_s is not None
    assert 90 <= queues["local"].oldest_queued_age_s < 120
    assert queues[NO_PROVIDER].pending == 1
    (local,) = status.providers
    assert (local.name, local.health, local.max_workers) == ("local", "HEALTHY", 2)
    live = sum(n for s, n in status.workers.items() if WorkerState(s).is_live)
    assert local.live_workers == live - 1  # the planted token is unused: it holds no slot
    assert status.tokens_outstanding >= 1

    as_json = run_cli(client.settings, "status", "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["jobs"]["QUEUED"] == 1 and data["total_jobs"] == 4
    assert {"queue", "provider", "queued", "oldest_queued_age_s"} <= set(data["queues"][0])
    text = run_cli(client.settings, "status")
    lines = text.stdout.splitlines()
    # First where the data is, so a user who sees no jobs knows which database answered.
    assert lines[0] == f"database: {mask_url(client.settings.database_url)}"
    assert lines[2] == f"home: {client.settings.home}"
    assert lines[3].startswith("jobs (4): ")
    assert data["database"] == lines[0].removeprefix("database: ")
    assert "local  local  ACTIVE  HEALTHY" in text.stdout


def test_the_tally_survives_deletes_and_folds(client: Client) -> None:
    jobs = [plant_job(client, state=JobState.SUCCEEDED, steps=HAPPY) for _ in range(30)]
    with client.container.store.transaction() as tx:
        for job in jobs[:10]:
            tx.jobs.compare_and_set(job.id, states=[JobState.SUCCEEDED], state=JobState.FAILED)
    with client.container.engine.begin() as conn:  # what a purge does, in one statement
        conn.execute(tables.jobs.delete().where(tables.jobs.c.id.in_([j.id for j in jobs[20:]])))
    expected = counted(client, "jobs")
    assert expected == {"SUCCEEDED": 10, "FAILED": 10}
    assert nonzero(client.status().jobs) == expected

    reads = client.container.reads
    with reads.read() as r:
        before = r.tally_rows()
    assert reads.fold_state_counts() > 0
    with reads.read() as r:
        assert r.tally_rows() < before
    assert nonzero(client.status().jobs) == expected
    assert reads.fold_state_counts() == 0  # already folded
