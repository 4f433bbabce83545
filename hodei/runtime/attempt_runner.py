"""Running a claimed attempt: the command, its output into job_logs, cancel checks."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from hodei.domain.records import Job, LogLine
from hodei.errors import DatabaseUnavailable, Forbidden, HodeiError, Unauthorized
from hodei.runtime.hardening import JobUser
from hodei.runtime.masking import masking
from hodei.runtime.retention import Budget, Retention
from hodei.runtime.runner import (
    SPAWN_ERROR_EXIT_CODE,
    CommandRunner,
    GroupGuard,
    OutputLine,
    build_job_env,
)
from hodei.services.jobs.attempts import Outcome
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)


# How long writing a batch of output is retried before its lines are given up (seconds
# between tries). While the command runs, the runner's thread waits through them, and
# the command waits on its full pipe: a little back-pressure, bounded. Once a write has
# failed, the lines waiting for the database are tried once per batch, and again with
# the longer schedule when the attempt ends.
_RETRY_DELAYS_S = (0.05, 0.25, 1.0)
_FINAL_RETRY_DELAYS_S = (0.25, 1.0, 2.0, 4.0)
# Output held for a database that failed, at most; older lines past it are lost (and
# said to be). Lines too, as each costs a few hundred bytes of bookkeeping.
_MAX_UNWRITTEN_BYTES = 8 * 1024 * 1024
_MAX_UNWRITTEN_LINES = 50_000


class Output(Protocol):
    """Where an attempt's output goes and where its cancel is asked (the worker's
    :class:`~hodei.runtime.control_plane.ControlPlane`, or :class:`StoreOutput`)."""

    def append_logs(self, lines: Sequence[LogLine]) -> None: ...

    def cancel_requested(self, job: Job) -> bool: ...


@dataclass(frozen=True)
class StoreOutput:
    """:class:`Output` straight on a store."""

    store: Store

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        append_lines(self.store, list(lines))

    def cancel_requested(self, job: Job) -> bool:
        with self.store.transaction() as tx:
            return tx.jobs.is_cancel_requested(job.id)


@dataclass
class LogSink:
    """Writes an attempt's output to ``job_logs`` as the runner hands it over, keeping what
    ``budget`` allows (see :mod:`hodei.runtime.retention`).

    Output is never dropped silently: a write that fails is retried, lines that still
    cannot be written are counted, logged as a warning with the job's id, and said in a
    note in the job's "system" stream. :meth:`close` writes the tail and any such note
    when the command has ended.
    """

    output: Output
    job: Job
    budget: Budget
    _retention: Retention = field(init=False)
    _unwritten: deque[LogLine] = field(init=False, default_factory=deque)
    _unwritten_bytes: int = field(init=False, default=0)
    _lost_lines: int = field(init=False, default=0)
    _lost_bytes: int = field(init=False, default=0)
    _lost_reason: str = field(init=False, default="")  # of the last failed write
    _loss_reason: str = field(init=False, default="")  # of the last lines given up
    _holding: bool = field(init=False, default=False)  # lines wait for the database
    # How to wait between tries; a test may make it instant.
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self._retention = Retention(self.budget)

    def write(self, batch: Sequence[OutputLine]) -> None:
        """The runner's ``on_output``: never raises, whatever the database does."""
        # Lines still waiting from an earlier failure: the database is known to be in
        # trouble, so try once now and leave the long retries to close().
        delays = () if self._unwritten else _RETRY_DELAYS_S
        self._queue(self._retention.admit(batch))
        self._write_unwritten(delays)

    def close(self) -> list[LogLine]:
        """Write the held tail (after the marker, if lines were dropped), then what is still
        unwritten, then a note of anything lost.

        Returns the lines the database could not take because it is unreachable (and
        the note, if any): the worker keeps them with the attempt's outcome and writes
        them before it (hodei/runtime/outcomes.py), so an outage loses no output."""
        self._queue(self._retention.finish())
        self._write_unwritten(_FINAL_RETRY_DELAYS_S)
        if self._unwritten and self._holding:
            handed = list(self._unwritten)
            self._unwritten.clear()
            self._unwritten_bytes = 0
            if self._lost_lines:
                handed.append(self._loss_note())
                self._lost_lines = self._lost_bytes = 0
            return handed
        if self._unwritten:
            self._lose(list(self._unwritten), self._lost_reason)
            self._unwritten.clear()
            self._unwritten_bytes = 0
        self._note_losses(_FINAL_RETRY_DELAYS_S)
        return []

    def _queue(self, lines: Sequence[OutputLine]) -> None:
        for line in lines:
            self._unwritten.append(self._row(line))
            self._unwritten_bytes += len(line.data)
        overflow: list[LogLine] = []
        while len(self._unwritten) > 1 and (
            self._unwritten_bytes > _MAX_UNWRITTEN_BYTES
            or len(self._unwritten) > _MAX_UNWRITTEN_LINES
        ):
            overflow.append(self._unwritten.popleft())
            self._unwritten_bytes -= len(overflow[-1].data)
        if overflow:
            self._lose(overflow, f"{self._lost_reason} (more than the worker holds)")

    def _write_unwritten(self, delays: Sequence[float]) -> None:
        if not self._unwritten:
            return
        rows = list(self._unwritten)
        error = self._append(rows, delays)
        if error is None:
            if self._holding:
                self._holding = False
                logger.info(
                    "wrote %d held output line(s) of job %s",
                    len(rows),
                    self.job.id,
                    extra=self._log_extra(),
                )
            self._unwritten.clear()
            self._unwritten_bytes = 0
            self._note_losses(())
            return
        self._lost_reason = _reason(error)
        if isinstance(error, (Unauthorized, Forbidden)):
            # Not this worker's attempt any more (API mode): no line of it will be taken.
            self._unwritten.clear()
            self._unwritten_bytes = 0
            self._lose(rows, self._lost_reason)
            return
        if isinstance(error, DatabaseUnavailable):
            # Keep them for the next batch or the end: no row could be written now. One
            # line when holding starts, one when it ends, not one per batch; at INFO, as
            # the outage itself is the process's one warning (hodei/store/outage.py).
            if not self._holding:
                self._holding = True
                logger.info(
                    "holding output of job %s until the database is back: %s",
                    self.job.id,
                    self._lost_reason,
                    extra=self._log_extra(),
                )
            return
        # The database refuses this batch: write its lines one by one and lose only the
        # ones it refuses.
        self._unwritten.clear()
        self._unwritten_bytes = 0
        for row in rows:
            if self._append([row], ()) is not None:
                self._lose([row], self._lost_reason)
        self._note_losses(())

    def _append(self, rows: Sequence[LogLine], delays: Sequence[float]) -> Exception | None:
        """Write ``rows`` in one transaction, trying again after each of ``delays``; the
        last error, or None once written."""
        for delay in (*delays, None):
            try:
                self.output.append_logs(rows)
                return None
            except Exception as exc:  # whatever the driver raises, output is not dropped
                error = exc
                logger.debug(
                    "writing %d output line(s) of job %s failed: %s",
                    len(rows),
                    self.job.id,
                    _reason(exc),
                    extra=self._log_extra(),
                )
            if delay is not None:
                self._sleep(delay)
        return error

    def _lose(self, rows: Sequence[LogLine], reason: str) -> None:
        self._loss_reason = reason
        self._lost_lines += len(rows)
        self._lost_bytes += sum(len(r.data) for r in rows)
        logger.warning(
            "could not store %d output line(s) of job %s: %s",
            len(rows),
            self.job.id,
            reason,
            extra=self._log_extra(),
        )

    def _note_losses(self, delays: Sequence[float]) -> None:
        """Say in the job's "system" stream what could not be stored (once written, the
        count starts again)."""
        if not self._lost_lines:
            return
        note = self._loss_note()
        if self._append([note], delays) is None:
            self._lost_lines = self._lost_bytes = 0
        else:
            logger.warning(
                "could not note in job %s's output that %d line(s) were lost",
                self.job.id,
                self._lost_lines,
                extra=self._log_extra(),
            )

    def _loss_note(self) -> LogLine:
        return self._row(
            OutputLine(
                "system",
                f"hodei: {self._lost_lines} output line(s) ({self._lost_bytes} bytes) of"
                f" this attempt could not be stored: {self._loss_reason}",
                datetime.now(UTC),
            )
        )

    def _row(self, line: OutputLine) -> LogLine:
        return LogLine(
            self.job.id, self.job.attempt, line.stream, line.line, line.ts, data=line.data
        )

    def _log_extra(self) -> dict[str, str]:
        return {"job_id": str(self.job.id), "correlation_id": self.job.correlation_id or ""}


def _reason(exc: Exception) -> str:
    """One line about a failed write, without SQL or parameters (which hold output)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:200]


def run_attempt(
    output: Output,
    job: Job,
    *,
    budget: Budget,
    grace_s: float,
    guard: GroupGuard | None = None,
    user: JobUser | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> Ending:
    """Run ``job``'s command for its current attempt and say how it ended; the command
    also gets ``secret_env`` (the job's, decrypted), whose values its output has masked."""
    sink = LogSink(output, job, budget)
    secrets = dict(secret_env or {})
    extra = {
        "HODEI_JOB_ID": str(job.id),
        "HODEI_ATTEMPT": str(job.attempt),
        "HODEI_JOB_NAME": job.name,
    }
    if job.correlation_id:
        extra["HODEI_CORRELATION_ID"] = job.correlation_id

    def should_cancel() -> bool:
        try:
            return output.cancel_requested(job)
        except DatabaseUnavailable:
            return False  # asked again in 0.5 s; the outage is logged once elsewhere
        except HodeiError as exc:  # refused (API mode): the finish will say why
            logger.debug("cancel check of job %s failed: %s", job.id, exc)
            return False

    runner = CommandRunner(grace_s=grace_s, cancel_check_interval_s=0.5, guard=guard, user=user)
    try:
        outcome = runner.run(
            job.spec.argv,
            env=build_job_env({**job.spec.env, **secrets}, extra, user=user),
            cwd=job.spec.working_dir,
            timeout_s=job.spec.timeout_s,
            on_output=masking(secrets.values(), sink.write),
            should_cancel=should_cancel,
        )
    except BaseException:
        held = sink.close()
        if held:
            logger.warning(
                "could not store %d output line(s) of job %s: the worker failed while the "
                "database was unreachable",
                len(held),
                job.id,
                extra={"job_id": str(job.id)},
            )
        raise
    # Before the attempt's end is written: followers drain it all.
    held = sink.close()
    return Ending(outcome, held)


def unstartable(output: Output, job: Job, budget: Budget, message: str) -> Ending:
    """The attempt's end when its command cannot even be started (its secret_env cannot
    be decrypted): ``message`` in its "system" stream, and exit 127 as for a command
    that is not found."""
    sink = LogSink(output, job, budget)
    sink.write([OutputLine("system", f"hodei: {message}", datetime.now(UTC))])
    held = sink.close()
    return Ending(Outcome(exit_code=SPAWN_ERROR_EXIT_CODE, error=message), held)


def append_lines(store: Store, lines: list[LogLine]) -> None:
    """Store output lines kept through an outage (raises if it still cannot)."""
    with store.transaction() as tx:
        tx.logs.append(lines)


@dataclass(frozen=True)
class Ending:
    """How the attempt ended, and output lines the database could not take yet."""

    outcome: Outcome
    unwritten: list[LogLine]
