"""Periodic upkeep run by beat: reap stale workers, expire tokens, enforce deadlines, purge.

Each function is idempotent and safe to run from two schedulers at once: every change
is a conditional update, and only the transaction that wins it writes the events.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.event_builders import token_event
from hodei.domain.events import Actor, EventType
from hodei.domain.records import Job, Worker
from hodei.domain.states import AttemptState
from hodei.services.fleet.workers import fail_provisioning
from hodei.services.jobs.dispatch import publish_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapReport:
    lost_workers: list[Worker]
    requeued: list[Job]
    failed: list[Job]


def reap_stale_workers(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    *,
    stale_after_s: float,
    lost_requeues: int,
    provider_ids: Collection[UUID | None] | None = None,
) -> ReapReport:
    """Workers silent for ``stale_after_s`` become LOST; their running attempts are
    requeued as new attempts (up to ``lost_requeues`` losses per job), else FAILED.
    ``provider_ids``: only those providers' workers (a waiter tending its job)."""
    now = clock.now()
    threshold = now - timedelta(seconds=stale_after_s)
    with store.transaction() as tx:
        candidates = tx.workers.stale(heartbeat_before=threshold, limit=200)
    if provider_ids is not None:
        candidates = [w for w in candidates if w.provider_id in provider_ids]
    report = ReapReport([], [], [])
    for worker in candidates:
        reason = _silence(worker)
        with store.transaction() as tx:
            lost = declare_lost(
                tx,
                now,
                worker,
                threshold,
                reason=reason,
                lost_requeues=lost_requeues,
                report=report,
            )
            if not lost:
                continue  # it heartbeated meanwhile, or another reaper got it
        logger.warning(
            "worker %s is LOST: %s", worker.id, reason, extra={"worker_id": str(worker.id)}
        )
    if report.requeued:
        publish_jobs(
            store,
            clock,
            publisher,
            report.requeued,
            {j.id: "requeued after worker_lost" for j in report.requeued},
        )
    return report


def _silence(worker: Worker) -> str:
    """Why a stale worker is LOST (a row with neither heartbeat nor registration read
    "no heartbeat since None")."""
    if worker.last_heartbeat is not None:
        return f"no heartbeat since {worker.last_heartbeat}"
    if worker.registered_at is not None:
        return f"no heartbeat since it registered at {worker.registered_at}"
    return f"neither registered nor sent a heartbeat since it was created at {worker.created_at}"


def declare_lost(
    tx: Transaction,
    now: datetime,
    worker: Worker,
    heartbeat_before: datetime,
    *,
    reason: str,
    lost_requeues: int,
    report: ReapReport,
) -> bool:
    """Within ``tx``: LOST (with WorkerLost) if ``worker`` has not heartbeated since
    ``heartbeat_before``, and its running attempts recovered; False if it had."""
    if not tx.apply(
        transitions.lose(worker, silent_since=heartbeat_before, reason=reason, now=now)
    ):
        return False
    report.lost_workers.append(worker)
    for job in tx.jobs.running_on_workers([worker.id]):
        _recover(tx, now, job, worker, lost_requeues, report)
    return True


def _recover(
    tx: Transaction,
    now: datetime,
    job: Job,
    worker: Worker,
    lost_requeues: int,
    report: ReapReport,
) -> None:
    earlier_losses = sum(
        1
        for a in tx.attempts.search(job.id)
        if a.attempt_no != job.attempt and a.state is AttemptState.LOST
    )
    losses = earlier_losses + 1
    log_extra = {
        "job_id": str(job.id),
        "worker_id": str(worker.id),
        "correlation_id": job.correlation_id,
    }
    if losses <= lost_requeues:
        change = transitions.requeue_lost(job, worker=worker, now=now)
        if not tx.apply(change):
            return
        requeued = transitions.after(job, change)
        report.requeued.append(requeued)
        logger.warning(
            "job %s requeued as attempt %d: worker lost", job.id, requeued.attempt, extra=log_extra
        )
        return
    if not tx.apply(transitions.fail_lost(job, worker=worker, now=now)):
        return
    report.failed.append(job)
    logger.error("job %s failed: worker lost %d times", job.id, losses, extra=log_extra)


# A token is consumed a moment before its worker registers (two transactions).
TOKENLESS_GRACE = timedelta(seconds=60)


def expire_tokens(store: Store, clock: Clock) -> list[Worker]:
    """Unconsumed expired tokens: TokenExpired, and their never-registered workers become
    PROVISION_FAILED, as do PROVISIONING workers with no token left to register with.
    Returns those workers so their infrastructure can be removed."""
    now = clock.now()
    failed: list[Worker] = []
    with store.transaction() as tx:
        for token in tx.tokens.expired_unconsumed(now, limit=500):
            worker = tx.workers.get(token.worker_id)
            reason = "never registered before its token expired"
            if worker is None:
                continue
            expired = token_event(
                token.id,
                EventType.TOKEN_EXPIRED,
                actor=Actor.REAPER,
                now=now,
                worker_id=str(worker.id),
            )
            if fail_provisioning(tx, now, worker, reason, actor=Actor.REAPER, cause=expired):
                failed.append(worker)
        # What a crash (between consuming a token and registering) or hand-made SQL
        # leaves: a PROVISIONING row that no token can ever register. Judged by its
        # creation time, like every other staleness rule.
        stranded = tx.workers.provisioning_without_token(
            now=now, created_before=now - TOKENLESS_GRACE, limit=500
        )
        for worker in stranded:
            reason = "never registered, and has no token left to register with"
            if fail_provisioning(tx, now, worker, reason, actor=Actor.REAPER):
                failed.append(worker)
    if failed:
        logger.warning("%d worker(s) never registered and never will", len(failed))
    return failed


def enforce_deadlines(store: Store, clock: Clock, *, grace_s: float) -> list[Job]:
    """RUNNING jobs past their timeout plus grace whose worker is gone end TIMED_OUT."""
    now = clock.now()
    ended: list[Job] = []
    with store.transaction() as tx:
        for job in tx.jobs.running_past_deadline(now - timedelta(seconds=grace_s), limit=500):
            error = "deadline passed; worker gone"
            if not tx.apply(transitions.time_out(job, now=now, error=error)):
                continue
            ended.append(job)
    return ended


def purge(
    store: Store, clock: Clock, *, retention_days: int, batch: int = 500, max_batches: int = 100
) -> int:
    """Delete terminal jobs older than the retention, with their logs, attempts and
    events, in bounded batches. ``retention_days`` 0 keeps everything."""
    if retention_days <= 0:
        return 0
    cutoff = clock.now() - timedelta(days=retention_days)
    total = 0
    for _ in range(max_batches):
        with store.transaction() as tx:
            deleted = tx.jobs.purge_finished(cutoff, batch)
        total += deleted
        if deleted < batch:
            break
    if total:
        logger.info("purged %d job(s) finished before %s", total, cutoff.isoformat())
    return total
