"""PostgreSQL goes down while a worker runs a job, for longer than the worker retries a
write inline (issue 15, item 3): the outcome is kept, written once when the database
is back, and the outage is two lines in the worker's log.

A private PostgreSQL server (tests/private_postgres.py) is really stopped and started;
the worker is a real ``hodei worker start`` launched by the local provider. One outage
serves the three tests below (module scope): it takes ~30 s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from hodei import JobState
from hodei.domain.records import Job, Worker
from hodei.errors import DatabaseUnavailable
from hodei.sdk import Client
from hodei.store.engine import create_engine
from hodei.store.migrate import upgrade
from tests import private_postgres
from tests.conftest import stop_workers
from tests.services import REDIS_URL, unavailable
from tests.support import fast_settings, job_events, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RETRY_WINDOW_S = 2.0  # HODEI_DB_RETRY_WINDOW: before issue 15, a finish gave up after it
# Well past the command's end (1 s), the output sink's own final retries (~7 s) and that
# window with tenacity's backoff within it: long enough that the old code gave up.
OUTAGE_S = 20.0


@dataclass
class Observation:
    job_state: JobState
    worker: Worker


@dataclass
class Outage:
    client: Client
    job: Job
    second: Job
    worker_id: UUID
    ran: Path
    logs_dir: Path
    observed: list[Observation]


@pytest.fixture(scope="module")
def private_pg() -> Iterator[private_postgres.PrivatePostgres]:
    if not private_postgres.available():
        unavailable(f"no PostgreSQL binaries in {private_postgres.BINDIR} to start a private one")
    pg = private_postgres.PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def outage(
    private_pg: private_postgres.PrivatePostgres,
    redis_db_number: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outage]:
    import redis

    root = tmp_path_factory.mktemp("outage")
    database_url = private_pg.create_database("hodei_outage")
    engine = create_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:  # one worker: both jobs run on it, one after the other
        conn.execute(sa.text("UPDATE provider_configs SET max_workers = 1 WHERE name = 'local'"))
    engine.dispose()
    broker_url = f"{REDIS_URL.rstrip('/')}/{redis_db_number}"
    redis.Redis.from_url(broker_url).flushdb()
    settings = fast_settings(
        root / ".hodei",
        database_url=database_url,
        broker_url=broker_url,
        db_retry_window_s=RETRY_WINDOW_S,
        worker_stale_after_s=60.0,
    )
    client = Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )
    ran = root / "ran"
    try:
        job = client.submit(
            f'echo before; sleep 1; echo "$HODEI_ATTEMPT" >> {ran}; echo after', timeout_s=600
        )
        second = client.submit("echo second")
        running = wait_for(
            lambda: (j := client.get(job.id)).state is JobState.RUNNING and j,
            timeout=60,
            message="the job RUNNING",
        )
        wait_for(lambda: client.logs(job.id), timeout=10, message="its first line")
        assert running.worker_id is not None

        private_pg.stop()
        down_at = time.monotonic()
        wait_for(ran.exists, timeout=10, message="the command to end during the outage")
        time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
        private_pg.start()

        observed: list[Observation] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # The worker first: the finish writes the job and the worker together, so
                # a worker read as READY means the job read after it is no longer RUNNING
                # (the other order could see the job before the finish and the worker after).
                with client.container.store.transaction() as tx:
                    worker = tx.workers.get(running.worker_id)
                state = client.get(job.id).state
            except DatabaseUnavailable:  # the client's pooled connections died with it
                time.sleep(0.05)
                continue
            assert worker is not None
            observed.append(Observation(state, worker))
            if state.is_terminal and client.get(second.id).state.is_terminal:
                break
            time.sleep(0.05)
        yield Outage(client, job, second, running.worker_id, ran, settings.home / "logs", observed)
    finally:
        if not private_pg.running:  # failed mid-outage: the workers are found through it
            private_pg.start()
        stop_workers(client)
        client.close()


def test_the_outcome_is_written_once_when_the_database_is_back(outage: Outage) -> None:
    client, job = outage.client, outage.job
    done = client.get(job.id)
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 1)
    kinds = [e.event_type for e in job_events(client, job.id)]
    assert kinds.count("JobSucceeded") == 1
    assert "JobRequeued" not in kinds
    assert outage.ran.read_text().splitlines() == ["1"]  # the command ran once
    # Output printed during the outage was kept and written with the outcome.
    assert [ln.line for ln in client.logs(job.id)] == ["before", "after"]
    with client.container.store.transaction() as tx:
        attempts = [(a.attempt_no, a.state.value) for a in tx.attempts.search(job.id)]
    assert attempts == [(1, "SUCCEEDED")]


def test_while_its_outcome_is_kept_the_worker_looks_neither_idle_nor_free(
    outage: Outage,
) -> None:
    client = outage.client
    assert outage.observed, "nothing observed after the restart"
    started_at = client.get(outage.job.id).started_at
    assert started_at is not None
    pending = [o for o in outage.observed if o.job_state is JobState.RUNNING]
    for o in pending:
        assert o.worker.state.value == "BUSY", o
        beat = o.worker.last_heartbeat
        if beat is not None and beat > started_at:  # a report made since the claim
            assert outage.job.id in (o.worker.reported_jobs or ()), o
    # The worker claimed no new job before the kept outcome was written.
    second = client.get(outage.second.id)
    assert second.state is JobState.SUCCEEDED
    assert second.worker_id == outage.worker_id
    succeeded = next(e for e in job_events(client, outage.job.id) if e.event_type == "JobSucceeded")
    started = next(e for e in job_events(client, second.id) if e.event_type == "JobStarted")
    assert succeeded.occurred_at <= started.occurred_at
    # Once written, the worker reports nothing held and is free again.
    with client.container.store.transaction() as tx:
        worker = tx.workers.get(outage.worker_id)
    assert worker is not None and worker.running_jobs == 0
    assert client.doctor().findings == []


def test_the_outage_is_one_warning_and_one_recovery_line(outage: Outage) -> None:
    logs = list(outage.logs_dir.glob("*.log"))
    assert len(logs) == 1, logs
    text = logs[0].read_text(errors="replace")
    lines = text.splitlines()
    assert "Traceback" not in text, text[-4000:]
    assert len([ln for ln in lines if "database unreachable" in ln]) == 1, text[-4000:]
    assert len([ln for ln in lines if "database reachable again" in ln]) == 1, text[-4000:]
    assert not [ln for ln in lines if " ERROR " in ln or "CRITICAL" in ln], text[-4000:]
