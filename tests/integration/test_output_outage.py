"""The worker's output sink while PostgreSQL is unreachable (a TCP proxy cut, not a mock):
lines wait and are written once it is back; what is finally lost is logged with the
job's id, never dropped silently."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from hodei.bootstrap import SystemClock
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.runtime import attempt_runner
from hodei.runtime.attempt_runner import LogSink
from hodei.runtime.retention import Budget
from hodei.runtime.runner import OutputLine
from hodei.services.jobs.submission import _store_jobs
from hodei.store.engine import create_engine
from hodei.store.sql_store import SqlStore
from tests.support import TcpProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[TcpProxy, SqlStore, Job]]:
    """A store that reaches the test's database through a proxy the test can cut."""
    proxy = TcpProxy(sa.engine.make_url(postgres_url).port or 5432)
    proxy.start()
    url = sa.engine.make_url(postgres_url).set(port=proxy.port)
    engine = create_engine(url.render_as_string(hide_password=False))
    store = SqlStore(engine)
    job = _store_jobs(store, SystemClock(), [JobSpec.create("true")], "test")[0].job
    yield proxy, store, job
    proxy.stop()
    engine.dispose()


def batch(*texts: str) -> list[OutputLine]:
    return [OutputLine("stdout", t, datetime.now(UTC)) for t in texts]


def stored(store: SqlStore, job: Job) -> list[tuple[str, str]]:
    with store.reading() as tx:
        return [(ln.stream, ln.line) for ln in tx.logs.read(job.id)]


def test_lines_wait_for_the_database_and_are_written_when_it_is_back(
    proxied: tuple[TcpProxy, SqlStore, Job],
) -> None:
    proxy, store, job = proxied
    sink = LogSink(attempt_runner.StoreOutput(store), job, Budget(0), _sleep=lambda _s: None)
    sink.write(batch("one"))
    proxy.stop()
    sink.write(batch("two", "three"))  # unreachable: kept
    proxy.start()
    sink.write(batch("four"))
    sink.close()
    assert stored(store, job) == [("stdout", t) for t in ("one", "two", "three", "four")]


def test_lines_still_unwritten_at_the_end_are_handed_to_the_worker_to_keep(
    proxied: tuple[TcpProxy, SqlStore, Job], caplog: pytest.LogCaptureFixture
) -> None:
    """The database is still unreachable when the command ends: close() gives the lines
    back, and the worker keeps them with the attempt's outcome and writes them before it
    (runtime/outcomes.py; tests/integration/test_database_outage.py runs that for real)."""
    proxy, store, job = proxied
    sink = LogSink(attempt_runner.StoreOutput(store), job, Budget(0), _sleep=lambda _s: None)
    sink.write(batch("one"))
    proxy.stop()
    with caplog.at_level(logging.INFO, logger="hodei.runtime.attempt_runner"):
        sink.write(batch("two"))
        held = sink.close()
    assert [(r.stream, r.line) for r in held] == [("stdout", "two")]
    said = [r for r in caplog.records if r.levelno >= logging.INFO]
    # One line when holding starts, at INFO: the outage is the process's one warning.
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in said] == [
        ("INFO", f"holding output of job {job.id} until the database is back")
    ]
    assert all(getattr(r, "job_id", None) == str(job.id) for r in said)
    proxy.start()
    attempt_runner.append_lines(store, held)  # what the worker's OutcomeKeeper does
    assert stored(store, job) == [("stdout", "one"), ("stdout", "two")]


def test_past_what_the_sink_holds_the_oldest_lines_are_lost_and_said_to_be(
    proxied: tuple[TcpProxy, SqlStore, Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, store, job = proxied
    monkeypatch.setattr(attempt_runner, "_MAX_UNWRITTEN_LINES", 2)
    sink = LogSink(attempt_runner.StoreOutput(store), job, Budget(0), _sleep=lambda _s: None)
    proxy.stop()
    for text in ("one", "two", "three", "four"):
        sink.write(batch(text))
    proxy.start()
    sink.close()
    got = stored(store, job)
    assert got[:2] == [("stdout", "three"), ("stdout", "four")]
    assert len(got) == 3 and got[2][0] == "system"
    assert got[2][1].startswith("hodei: 2 output line(s) (8 bytes) of this attempt could not")
    assert got[2][1].endswith("(more than the worker holds)")
