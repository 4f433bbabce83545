"""The worker's OutcomeKeeper: an outcome the database cannot take now is kept and
written later, exactly once, or given up at its deadline (runtime/outcomes.py). The
"database" here is a callable that fails a given number of times: the keeper's own
logic is what is tested; tests/integration/test_database_outage.py stops a real one."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hodei.domain.records import Job, LogLine
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import DatabaseUnavailable
from hodei.runtime.outcomes import OutcomeKeeper
from hodei.services.jobs.attempts import Outcome


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Database:
    """Refuses the first ``failures`` writes, then records them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[tuple[str, object]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    def _maybe_fail(self) -> None:
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                raise DatabaseUnavailable("database unavailable: connection refused")

    def write(self, job: Job, outcome: Outcome) -> None:
        self._maybe_fail()
        self.written.append(("outcome", job.id))
        self.times.append(time.monotonic())

    def write_lines(self, lines: list[LogLine]) -> None:
        self._maybe_fail()
        self.written.append(("lines", len(lines)))


def _job(deadline_in: timedelta = timedelta(minutes=10)) -> Job:
    now = datetime.now(UTC)
    job = Job(
        id=uuid.uuid4(),
        name="j",
        state=JobState.RUNNING,
        spec=JobSpec.create("true"),
        created_at=now,
        updated_at=now,
        attempt=1,
    )
    return replace(job, started_at=now, deadline_at=now + deadline_in)


def _keeper(db: _Database, gave_up: list[Job]) -> OutcomeKeeper:
    return OutcomeKeeper(
        db.write, db.write_lines, _Clock(), on_give_up=lambda job, _: gave_up.append(job)
    )


def test_an_outcome_the_database_refuses_is_written_once_later() -> None:
    db, gave_up = _Database(failures=3), []
    keeper = _keeper(db, gave_up)
    job = _job()
    keeper.claiming(job.id)
    line = LogLine(job.id, 1, "stdout", "after", datetime.now(UTC))
    keeper.finish(job, Outcome(exit_code=0), [line])
    assert keeper.held().jobs == (job.id,)  # still held, now as a kept outcome
    assert keeper.held().pending_outcomes == 1
    assert keeper.wait_until_written(timeout=10)
    # The held-back output goes first, once; the outcome after it, once.
    assert db.written == [("lines", 1), ("outcome", job.id)]
    assert keeper.held().jobs == () and keeper.pending == 0
    assert gave_up == []


def test_no_new_claim_while_an_outcome_waits() -> None:
    db, gave_up = _Database(failures=4), []
    keeper = _keeper(db, gave_up)
    first = _job()
    keeper.claiming(first.id)
    keeper.finish(first, Outcome(exit_code=0))
    claimed_at: list[float] = []
    second = _job()
    claimer = threading.Thread(
        target=lambda: (keeper.claiming(second.id), claimed_at.append(time.monotonic()))
    )
    claimer.start()
    claimer.join(10)
    assert db.written == [("outcome", first.id)]
    assert claimed_at and claimed_at[0] >= db.times[0]  # only once it was written
    assert keeper.held().jobs == (second.id,)


def test_an_outcome_still_unwritten_at_its_deadline_is_given_up() -> None:
    db, gave_up = _Database(failures=10**6), []
    keeper = _keeper(db, gave_up)
    job = _job(deadline_in=timedelta(seconds=1))
    keeper.claiming(job.id)
    keeper.finish(job, Outcome(exit_code=0))
    assert keeper.wait_until_written(timeout=15)
    assert gave_up == [job]
    assert db.written == []
    assert keeper.held().jobs == ()
