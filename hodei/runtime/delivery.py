"""Running a claimed attempt: the command, its output into job_logs, cancel checks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from hodei.domain.records import Job, LogLine
from hodei.errors import HodeiError
from hodei.runtime.runner import CommandRunner, GroupGuard, OutputLine, build_job_env
from hodei.services.execution import Outcome
from hodei.services.ports import Store

logger = logging.getLogger(__name__)


@dataclass
class LogSink:
    """Writes batches of output lines; past ``max_lines`` it writes one truncation line."""

    store: Store
    job: Job
    max_lines: int
    written: int = 0
    truncated: bool = False
    _extra: dict[str, str] = field(default_factory=dict)

    def write(self, batch: Sequence[OutputLine]) -> None:
        room = self.max_lines - self.written
        keep = list(batch[: max(room, 0)])
        rows = [self._row(line) for line in keep]
        if len(keep) < len(batch) and not self.truncated:
            self.truncated = True
            rows.append(
                self._row(
                    OutputLine(
                        "system",
                        f"hodei: output truncated after {self.max_lines} lines",
                        batch[len(keep)].ts,
                    )
                )
            )
        if not rows:
            return
        try:
            with self.store.transaction() as tx:
                tx.logs.append(rows)
        except HodeiError as exc:
            # Output is best effort: losing lines must not fail or hang the job.
            logger.warning(
                "dropped %d log line(s) of job %s: %s",
                len(rows),
                self.job.id,
                exc,
                extra=self._log_extra(),
            )
            return
        self.written += len(keep)

    def _row(self, line: OutputLine) -> LogLine:
        return LogLine(self.job.id, self.job.attempt, line.stream, line.line, line.ts)

    def _log_extra(self) -> dict[str, str]:
        return {"job_id": str(self.job.id), "correlation_id": self.job.correlation_id or ""}


def run_attempt(
    store: Store,
    job: Job,
    *,
    max_log_lines: int,
    grace_s: float,
    guard: GroupGuard | None = None,
) -> Outcome:
    """Run ``job``'s command for its current attempt and say how it ended."""
    sink = LogSink(store, job, max_log_lines)
    extra = {
        "HODEI_JOB_ID": str(job.id),
        "HODEI_ATTEMPT": str(job.attempt),
        "HODEI_JOB_NAME": job.name,
    }
    if job.correlation_id:
        extra["HODEI_CORRELATION_ID"] = job.correlation_id

    def should_cancel() -> bool:
        with store.transaction() as tx:
            return tx.jobs.is_cancel_requested(job.id)

    runner = CommandRunner(grace_s=grace_s, cancel_check_interval_s=0.5, guard=guard)
    result = runner.run(
        job.spec.argv,
        env=build_job_env(job.spec.env, extra),
        cwd=job.spec.working_dir,
        timeout_s=job.spec.timeout_s,
        on_output=sink.write,
        should_cancel=should_cancel,
    )
    return Outcome(
        exit_code=result.exit_code,
        signal=result.signal,
        timed_out=result.timed_out,
        cancelled=result.cancelled,
        duration_ms=result.duration_ms,
        error=result.error,
    )
