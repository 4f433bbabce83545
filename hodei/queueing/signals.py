"""Celery signals become domain events: claim on task_prerun; the run-job task records
its outcome with :func:`write_outcome` through the worker's OutcomeKeeper, and
task_failure records a worker error the same way. Every write goes through a service,
so each state change carries its event. An outcome the database cannot take now is
kept by the worker and written when it can (runtime/outcomes.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from celery import Task
from celery.signals import task_failure, task_prerun, task_rejected, task_revoked
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from hodei.domain.records import Job
from hodei.errors import Conflict, DatabaseUnavailable, Unauthorized
from hodei.queueing.names import RUN_JOB_TASK
from hodei.queueing.worker_step import worker_context
from hodei.runtime.context import WorkerContext
from hodei.services.jobs.attempts import Claim, Outcome

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _retrying_db_blips(window_s: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` (a claim), retried through a database outage for
    ``window_s`` (HODEI_DB_RETRY_WINDOW), then given up (the message goes back to the
    broker). The first try runs outside tenacity, whose per-call setup was ~3% of a
    worker's CPU on the path that never fails."""
    try:
        return fn(*args, **kwargs)
    except DatabaseUnavailable:
        retrying = Retrying(
            retry=retry_if_exception_type(DatabaseUnavailable),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(window_s),
            reraise=True,
        )
        return retrying(fn, *args, **kwargs)


_connected = False


def connect() -> None:
    """Connect the handlers once per process; each finds its worker's context through
    its sender's app (queueing/worker_step.py)."""
    global _connected
    if _connected:
        return
    task_prerun.connect(_on_prerun, weak=False)
    task_failure.connect(_on_failure, weak=False)
    task_revoked.connect(_on_revoked, weak=False)
    task_rejected.connect(_on_rejected, weak=False)
    _connected = True


def _context(task: Task | None) -> WorkerContext | None:
    """The context of the hodei worker running ``task`` (run_job), else None."""
    if not _is_run_job(task) or task is None:
        return None
    return worker_context(task.app)


def _is_run_job(task: Any) -> bool:
    return getattr(task, "name", None) == RUN_JOB_TASK


def _on_prerun(
    sender: Task | None = None,
    task_id: str | None = None,
    args: tuple[Any, ...] | None = None,
    **_: Any,
) -> None:
    ctx = _context(sender)
    if ctx is None or not args or sender is None:
        return
    job_id, attempt = UUID(str(args[0])), int(args[1])
    # No new job while an outcome waits to be written (see runtime/outcomes.py).
    ctx.outcomes.claiming(job_id)
    try:
        claim: Claim = _retrying_db_blips(
            ctx.container.settings.db_retry_window_s,
            ctx.control.claim,
            job_id,
            attempt,
            str(task_id),
        )
    except (Unauthorized, Conflict) as exc:
        # An API-mode worker whose credential is revoked (LOST, TERMINATED, expired) or
        # that drains: no claim, the message goes back for another worker, and this one
        # stops consuming.
        ctx.outcomes.release(job_id)
        logger.warning(
            "job %s attempt %d not claimed, its message goes back: %s",
            job_id,
            attempt,
            exc.message,
            extra={"job_id": str(job_id), "attempt": attempt, "worker_id": str(ctx.worker_id)},
        )
        ctx.stop(f"claim refused: {exc.message}")
        return
    except DatabaseUnavailable as exc:
        # No claim: run_job gives the message back to the broker. No traceback: the
        # outage is logged once per process (hodei.store.outage).
        ctx.outcomes.release(job_id)
        logger.info(
            "job %s attempt %d not claimed, its message goes back: %s",
            job_id,
            attempt,
            exc,
            extra={"job_id": str(job_id), "attempt": attempt, "worker_id": str(ctx.worker_id)},
        )
        return
    except BaseException:
        ctx.outcomes.release(job_id)
        raise
    if not claim.won:
        ctx.outcomes.release(job_id)
    sender.request.hodei_claim = claim
    if claim.won:
        logger.info(
            "job %s attempt %d started",
            job_id,
            attempt,
            extra=_extra(job_id, attempt, ctx.worker_id, claim),
        )


def _on_failure(
    sender: Task | None = None,
    exception: BaseException | None = None,
    args: tuple[Any, ...] | None = None,
    **_: Any,
) -> None:
    ctx = _context(sender)
    if ctx is None or sender is None or not args:
        return
    claim: Claim | None = getattr(sender.request, "hodei_claim", None)
    if claim is None or not claim.won or claim.job is None:
        return
    if getattr(sender.request, "hodei_outcome", None) is not None:
        # The command ended and the task handed its outcome to the keeper (written, or
        # kept until it can be): AttemptFailed. Never a second finish.
        return
    logger.error(
        "job %s: the worker failed while running it: %s",
        args[0],
        exception,
        extra={"job_id": str(args[0]), "worker_id": str(ctx.worker_id)},
    )
    ctx.outcomes.finish(claim.job, Outcome(exit_code=None, error=f"worker error: {exception}"))


def write_outcome(ctx: WorkerContext, claimed: Job, outcome: Outcome) -> Job | None:
    """Record ``outcome`` (the platform publishes a retry that is due now); the job as
    it is after, None if the attempt was no longer this worker's. Raises
    (DatabaseUnavailable...) when it could not be written: the worker's OutcomeKeeper
    calls it (bound to the worker's context), and keeps the outcome to try again."""
    job = ctx.control.finish(claimed, outcome)
    if job is None:
        return None
    logger.info(
        "job %s attempt %d ended %s",
        claimed.id,
        claimed.attempt,
        job.state,
        extra=_extra(claimed.id, claimed.attempt, ctx.worker_id, None, job.correlation_id),
    )
    return job


def _on_revoked(request: Any = None, terminated: bool = False, **_: Any) -> None:
    if (
        request is not None
        and getattr(request, "task_name", getattr(request, "task", None)) == RUN_JOB_TASK
    ):
        logger.warning(
            "run_job %s revoked (terminated=%s); hodei cancels with `job cancel`",
            getattr(request, "id", "?"),
            terminated,
        )


def _on_rejected(message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    logger.warning("a message was rejected: %s", exc)


def _extra(
    job_id: UUID,
    attempt: int,
    worker_id: UUID,
    claim: Claim | None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    if claim is not None and claim.job is not None:
        correlation_id = claim.job.correlation_id
    return {
        "job_id": str(job_id),
        "attempt": attempt,
        "worker_id": str(worker_id),
        "correlation_id": correlation_id,
    }
