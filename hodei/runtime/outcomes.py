"""The outcomes a worker holds: a command's ending is kept until it is written.

A finish is tried once where the command ended (the run_job task). If the database
is unreachable, the outcome waits here and a thread of its own writes it, with backoff,
as soon as the database answers again, until the attempt's deadline; only then is it
given up and the reaper's recovery takes over. While any outcome waits, the worker
claims no new job, and its heartbeat reports what it holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from hodei.domain.records import Job, LogLine
from hodei.errors import DatabaseUnavailable
from hodei.services.fleet.workers import WorkerReport
from hodei.services.jobs.attempts import Outcome
from hodei.services.ports.clock import Clock

logger = logging.getLogger(__name__)

Write = Callable[[Job, Outcome], Job | None]  # the job after, None if no longer ours
WriteLines = Callable[[list[LogLine]], None]
GiveUp = Callable[[Job, Outcome], None]


@dataclass(frozen=True)
class Recorded:
    """What became of an outcome handed to :meth:`OutcomeKeeper.finish`."""

    kept: bool  # not written yet: the keeper writes it when the database answers
    job: Job | None = None  # once written: the job after it (None: no longer this worker's)


@dataclass
class _Pending:
    job: Job
    outcome: Outcome
    deadline: datetime
    since: datetime
    lines: list[LogLine]  # output the outage held back, written before the outcome


class _Unwritten(Exception):
    """A drain pass left an outcome unwritten: tenacity waits, then tries again."""


class OutcomeKeeper:
    """Holds this worker's jobs from claim to written outcome; see the module docstring."""

    def __init__(
        self, write: Write, write_lines: WriteLines, clock: Clock, *, on_give_up: GiveUp
    ) -> None:
        self._write = write
        self._write_lines = write_lines
        self._clock = clock
        self._on_give_up = on_give_up
        self._lock = threading.Condition()
        self._held: dict[UUID, str] = {}
        self._pending: dict[UUID, _Pending] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: set[UUID] = set()  # failures other than an outage, logged once

    # -- the job's way through the worker ----------------------------------------------

    def claiming(self, job_id: UUID) -> None:
        """Before the claim is written, so a heartbeat after it always names the job."""
        if self._pending:
            self.wait_until_written()
        with self._lock:
            self._held[job_id] = "running"

    def release(self, job_id: UUID) -> None:
        """The claim was lost (or failed): nothing of this job is held."""
        with self._lock:
            self._held.pop(job_id, None)

    def finish(self, job: Job, outcome: Outcome, lines: Sequence[LogLine] = ()) -> Recorded:
        """Write ``outcome`` (after ``lines``, output an outage held back) now; if that
        fails, keep both and let the thread write them."""
        unwritten = list(lines)
        try:
            if unwritten:
                self._write_lines(unwritten)
                unwritten = []
            after = self._write(job, outcome)
        except Exception as exc:
            now = self._clock.now()
            self._keep(_Pending(job, outcome, _deadline(job, now), now, unwritten), exc)
            return Recorded(kept=True)
        self.release(job.id)
        return Recorded(kept=False, job=after)

    def wait_until_written(self, timeout: float | None = None) -> bool:
        """Block while outcomes wait (each is bounded by its deadline); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout)

    def wake(self) -> None:
        """The database answered (a heartbeat went through): try the outcomes now."""
        if self._pending:
            self._wake.set()

    def held(self) -> WorkerReport:
        """What the heartbeat reports: every job held, and how many outcomes wait."""
        with self._lock:
            return WorkerReport(tuple(self._held), len(self._pending))

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- keeping and writing ----------------------------------------------------------

    def _keep(self, pending: _Pending, exc: Exception) -> None:
        job = pending.job
        extra = self._extra(pending)
        if isinstance(exc, DatabaseUnavailable):
            # The outage itself is logged once per process (hodei.store.outage).
            logger.debug("finish of job %s deferred: %s", job.id, exc, extra=extra)
        else:
            self._reported.add(job.id)
            logger.error("finish of job %s failed; retrying", job.id, exc_info=exc, extra=extra)
        logger.info(
            "job %s attempt %d ended (%s); its outcome is kept until it can be written "
            "(deadline %s)",
            job.id,
            job.attempt,
            pending.outcome.summary(),
            pending.deadline.isoformat(timespec="seconds"),
            extra=extra,
        )
        with self._lock:
            self._held[job.id] = "outcome"
            self._pending[job.id] = pending
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="hodei-outcomes"
                )
                self._thread.start()
        self._wake.set()

    def _write_pending(self, pending: _Pending) -> Job | None:
        if pending.lines:
            self._write_lines(pending.lines)
            pending.lines = []  # written: a retry of the finish must not add them again
        return self._write(pending.job, pending.outcome)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            retrying = Retrying(
                retry=retry_if_exception_type(_Unwritten),
                wait=wait_exponential(multiplier=0.2, max=5),
                stop=stop_never,  # each outcome is bounded by its own deadline instead
                sleep=self._sleep,
            )
            try:
                retrying(self._drain)
            except Exception:  # this thread must outlive any surprise: outcomes wait on it
                logger.exception("writing kept outcomes failed; trying again")
                self._sleep(5.0)
                self._wake.set()

    def _sleep(self, seconds: float) -> None:
        # A heartbeat that went through cuts the wait short.
        self._wake.wait(seconds)
        self._wake.clear()

    def _drain(self) -> None:
        """Write the waiting outcomes, earliest deadline first; raise if any is left."""
        with self._lock:
            waiting = sorted(self._pending.values(), key=lambda p: p.deadline)
        for pending in waiting:
            if self._clock.now() >= pending.deadline:
                self._give_up(pending)
                continue
            try:
                self._write_pending(pending)
            except DatabaseUnavailable as exc:
                raise _Unwritten() from exc
            except Exception as exc:
                if pending.job.id not in self._reported:
                    self._reported.add(pending.job.id)
                    logger.error(
                        "finish of job %s failed; retrying",
                        pending.job.id,
                        exc_info=exc,
                        extra=self._extra(pending),
                    )
                raise _Unwritten() from exc
            waited = (self._clock.now() - pending.since).total_seconds()
            logger.info(
                "job %s attempt %d: its kept outcome (%s) was written after %.0f s",
                pending.job.id,
                pending.job.attempt,
                pending.outcome.summary(),
                waited,
                extra=self._extra(pending),
            )
            self._forget(pending)

    def _give_up(self, pending: _Pending) -> None:
        logger.error(
            "job %s attempt %d: gave up writing its outcome (%s, %d output line(s)) at its "
            "deadline %s; the worker stops so that recovery takes the job over",
            pending.job.id,
            pending.job.attempt,
            pending.outcome.summary(),
            len(pending.lines),
            pending.deadline.isoformat(timespec="seconds"),
            extra=self._extra(pending),
        )
        self._forget(pending)
        self._on_give_up(pending.job, pending.outcome)

    def _forget(self, pending: _Pending) -> None:
        with self._lock:
            self._pending.pop(pending.job.id, None)
            self._held.pop(pending.job.id, None)
            self._reported.discard(pending.job.id)
            self._lock.notify_all()

    @staticmethod
    def _extra(pending: _Pending) -> dict[str, Any]:
        return {
            "job_id": str(pending.job.id),
            "attempt": pending.job.attempt,
            "correlation_id": pending.job.correlation_id,
        }


def _deadline(job: Job, now: datetime) -> datetime:
    """The attempt's deadline as the claim stored it (started_at + timeout)."""
    if job.deadline_at is not None:
        return job.deadline_at
    return (job.started_at or now) + timedelta(seconds=job.spec.timeout_s)
