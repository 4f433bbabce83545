"""Celery tasks: ``hodei.run_job`` and the maintenance tasks beat schedules.

Tasks are thin: parse, call a service, map the result. The run-job lifecycle lives in
the signal handlers of :mod:`hodei.queueing.signals` (claim, a worker error) and in
:func:`execute` (the outcome, handed to the worker's OutcomeKeeper).
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from celery.exceptions import Reject

from hodei.domain.records import Job
from hodei.errors import AttemptFailed, HodeiError
from hodei.queueing import maintenance_tasks, signals
from hodei.queueing.names import RUN_JOB_TASK
from hodei.queueing.worker_step import worker_context
from hodei.runtime.attempt_runner import run_attempt, unstartable
from hodei.runtime.context import WorkerContext
from hodei.runtime.retention import Budget
from hodei.services.jobs.attempts import Claim
from hodei.store.secrets import SecretsUnreadable

logger = logging.getLogger(__name__)


def register(app: Celery) -> None:
    """Register hodei's tasks on ``app`` (signal handlers are process-wide)."""
    signals.connect()

    @app.task(
        name=RUN_JOB_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        # Expected: logged as one line, without a traceback, and the message acked.
        throws=(AttemptFailed,),
        shared=False,  # this app's task, not added to apps created later (see maintenance_tasks)
    )
    def run_job(self: Task, job_id: str, attempt: int) -> str:
        return execute(self, job_id, attempt)

    maintenance_tasks.register(app)


def execute(task: Task, job_id: str, attempt: int) -> str:
    """Run the attempt that task_prerun claimed and record its outcome; skip a delivery
    that lost the claim.

    What is returned is only what Celery logs ("Task hodei.run_job[...] succeeded in
    0.01s: 'exit 0'") and Flower shows as the result: a few words. An attempt that did
    not succeed raises :class:`AttemptFailed` once its outcome is recorded, so the task
    fails in Flower as the job did in hodei; the message is acked all the same (an
    exception is not a lost worker), and task_failure knows the outcome is recorded."""
    claim: Claim | None = getattr(task.request, "hodei_claim", None)
    log_extra = {"job_id": job_id, "attempt": attempt}
    if claim is None:
        # The claim itself failed (database unreachable): give the message back.
        raise Reject("could not claim the attempt; requeued", requeue=True)
    if not claim.won or claim.job is None:
        logger.info(
            "dropped delivery of job %s attempt %s: %s",
            job_id,
            attempt,
            claim.reason,
            extra=log_extra,
        )
        return f"skipped: {claim.reason}"
    ctx = worker_context(task.app)  # held by the Celery worker (queueing/worker_step.py)
    assert ctx is not None, "run_job only runs inside `hodei worker start`"
    settings = ctx.container.settings
    budget = Budget(settings.max_log_bytes, settings.max_log_lines)
    try:
        secret_env = _secret_env(ctx, claim.job)
    except (SecretsUnreadable, HodeiError) as exc:
        logger.warning("job %s not started: %s", job_id, exc, extra=log_extra)
        ending = unstartable(ctx.control, claim.job, budget, str(exc))
    else:
        ending = run_attempt(
            ctx.control,
            claim.job,
            budget=budget,
            grace_s=settings.cancel_grace_s,
            guard=ctx.guard,
            user=ctx.job_user,
            secret_env=secret_env,
        )
    outcome = ending.outcome
    task.request.hodei_outcome = outcome  # from here on, the outcome is this task's to record
    # Written now, or kept by the worker until the database answers (runtime/outcomes.py).
    recorded = ctx.outcomes.finish(claim.job, outcome, ending.unwritten)
    if not outcome.succeeded:
        if recorded.kept:
            state = "kept until the database answers"
        elif recorded.job is None:
            state = "not recorded: no longer this worker's"
        else:
            state = str(recorded.job.state)
        raise AttemptFailed(f"{outcome.summary()} (job {state})")
    return outcome.summary()


def _secret_env(ctx: WorkerContext, job: Job) -> dict[str, str]:
    """The job's secret_env in clear, for its command only (never logged)."""
    return ctx.control.secret_env(job)
