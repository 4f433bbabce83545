"""Reconciling the store with a provider's infrastructure, both ways, and giving
unschedulable jobs another chance (docs/providers.md, "Provisioning and
reconciliation").

- A hodei-labelled container or pod whose worker is not live (or unknown) is removed.
- A live worker whose container or pod has finished or vanished becomes LOST (or
  PROVISION_FAILED if it never registered); its running job is requeued or failed.
- Exit codes, OOM kills and pod problems become InfrastructureEvents on the worker's
  and its job's timeline; permanent problems fail the provider's waiting jobs fast.
- PENDING jobs without a provider are matched again; after the queue timeout they
  fail with ``no_provider``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.events import Actor, EventType
from hodei.domain.records import Job, Provider, Worker
from hodei.domain.selection import Requirements, select_provider
from hodei.domain.states import FailureReason, WorkerState
from hodei.services import maintenance
from hodei.services.fleet.infra_failures import (
    already_recorded,
    fail_waiting_jobs,
    infrastructure_event,
)
from hodei.services.fleet.workers import fail_provisioning
from hodei.services.jobs.dispatch import publish_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import InfrastructureInspector, InfraWorker
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import EventQuery, Store, Transaction

logger = logging.getLogger(__name__)

# A worker row exists a moment before its container does: give a launch this long.
EXIT_GRACE = timedelta(seconds=30)
LAUNCH_GRACE = timedelta(seconds=20)


@dataclass
class ReconcileReport:
    removed: list[str] = field(default_factory=list)  # container ids / pod names
    lost: list[UUID] = field(default_factory=list)
    provision_failed: list[UUID] = field(default_factory=list)
    events: int = 0
    failed_jobs: list[UUID] = field(default_factory=list)


def reconcile_provider(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    provider: Provider,
    inspector: InfrastructureInspector,
    *,
    lost_requeues: int,
) -> ReconcileReport:
    """Bring ``provider``'s containers or pods and its worker rows into agreement."""
    report = ReconcileReport()
    infra = inspector.list_managed()
    with store.transaction() as tx:
        rows = {w.id: w for w in tx.workers.search(queue=provider.queue, limit=1000)}
    seen = {i.worker_id for i in infra if i.worker_id is not None}
    requeued: list[Job] = []
    for item in infra:
        worker = rows.get(item.worker_id) if item.worker_id else None
        requeued += _reconcile_one(store, clock, provider, item, worker, lost_requeues, report)
        worker = _reload(store, worker)
        if (worker is None or not worker.state.is_live) and not _exiting(item, worker, clock):
            _remove(inspector, item, worker, report)
    now = clock.now()
    for worker in rows.values():
        if (
            worker.state.is_live
            and worker.id not in seen
            and now - worker.created_at > LAUNCH_GRACE
        ):
            requeued += _vanished(store, clock, worker, lost_requeues, report)
    if requeued:
        publish_jobs(
            store,
            clock,
            publisher,
            requeued,
            {j.id: "requeued after worker_lost" for j in requeued},
        )
    return report


def _exiting(item: InfraWorker, worker: Worker | None, clock: Clock) -> bool:
    """A worker that just terminated itself is still shutting down: let its container exit
    on its own, so the exit is recorded, unless it takes longer than EXIT_GRACE."""
    if worker is None or worker.state is not WorkerState.TERMINATED or item.finished:
        return False
    ended = worker.terminated_at or worker.updated_at
    return clock.now() - ended < EXIT_GRACE


def _reconcile_one(
    store: Store,
    clock: Clock,
    provider: Provider,
    item: InfraWorker,
    worker: Worker | None,
    lost_requeues: int,
    report: ReconcileReport,
) -> list[Job]:
    if worker is None:
        return []
    if item.problem and item.running:
        _record(store, clock, worker, item, report)
        if item.permanent and worker.state is WorkerState.PROVISIONING:
            _provision_failed(store, clock, worker, f"{item.problem}: {item.detail}", report)
            failed = fail_waiting_jobs(
                store, clock, provider, kind=item.problem, detail=item.detail
            )
            report.failed_jobs += [j.id for j in failed]
        return []
    if not item.finished:
        return []
    _record(store, clock, worker, item, report)
    reason = _exit_text(item)
    if worker.state is WorkerState.PROVISIONING:
        _provision_failed(store, clock, worker, reason, report)
        return []
    if worker.state.is_live:
        return _lose(store, clock, worker, reason, lost_requeues, report)
    return []


def _record(
    store: Store, clock: Clock, worker: Worker, item: InfraWorker, report: ReconcileReport
) -> None:
    """One InfrastructureEvent per worker and kind, on its and its running job's timeline."""
    kind = item.problem or ("oom_killed" if item.oom_killed else "exited")
    now = clock.now()
    with store.transaction() as tx:
        # Touch the worker's row first: concurrent passes queue behind it, so the check
        # below sees the other pass's event and each kind is recorded once.
        tx.apply(transitions.touch(worker.id, now=now))
        if already_recorded(tx, worker.id, kind):
            return
        jobs = tx.jobs.running_on_workers([worker.id]) or _oom_victim(tx, worker, kind)
        infrastructure_event(
            tx,
            now,
            worker=worker,
            jobs=jobs,
            kind=kind,
            detail=item.detail or _exit_text(item),
            exit_code=item.exit_code,
            oom_killed=item.oom_killed,
            infra_ref=item.ref,
        )
    report.events += 1
    if kind != "exited" or (item.exit_code or jobs):
        logger.warning(
            "worker %s: %s (%s)",
            worker.id,
            kind,
            item.detail or _exit_text(item),
            extra={"worker_id": str(worker.id)},
        )


def _oom_victim(tx: Transaction, worker: Worker, kind: str) -> list[Job]:
    """The kernel usually OOM-kills the job (the biggest process), not the worker, so the
    job has already ended when the container's OOM flag is seen: its last job."""
    if kind != "oom_killed":
        return []
    started = tx.events.search(
        EventQuery(
            event_types=[str(EventType.JOB_STARTED)],
            since=worker.created_at,
            newest_first=True,
            limit=500,
        )
    )
    for event in started:
        if event.payload.get("worker_id") == str(worker.id):
            job = tx.jobs.get(event.aggregate_id)
            return [job] if job is not None else []
    return []


def _exit_text(item: InfraWorker) -> str:
    if item.oom_killed:
        return f"container OOM-killed (exit code {item.exit_code})"
    if item.exit_code is None:
        return "container gone"
    return f"container exited with code {item.exit_code}"


def _lose(
    store: Store,
    clock: Clock,
    worker: Worker,
    reason: str,
    lost_requeues: int,
    report: ReconcileReport,
) -> list[Job]:
    now = clock.now()
    outcome = maintenance.ReapReport([], [], [])
    with store.transaction() as tx:
        # Any heartbeat is "before" this moment: the container is gone whatever it said.
        if not maintenance.declare_lost(
            tx,
            now,
            worker,
            now + timedelta(days=1),
            reason=reason,
            lost_requeues=lost_requeues,
            report=outcome,
        ):
            return []
    report.lost.append(worker.id)
    logger.warning("worker %s is LOST: %s", worker.id, reason, extra={"worker_id": str(worker.id)})
    return outcome.requeued


def _provision_failed(
    store: Store, clock: Clock, worker: Worker, reason: str, report: ReconcileReport
) -> None:
    now = clock.now()
    with store.transaction() as tx:
        if not fail_provisioning(tx, now, worker, reason, actor=Actor.PROVISIONER):
            return
    report.provision_failed.append(worker.id)
    logger.error(
        "worker %s could not start: %s", worker.id, reason, extra={"worker_id": str(worker.id)}
    )


def _vanished(
    store: Store, clock: Clock, worker: Worker, lost_requeues: int, report: ReconcileReport
) -> list[Job]:
    gone = InfraWorker(ref=worker.infra_ref or "", worker_id=worker.id, running=False)
    _record(store, clock, worker, gone, report)
    if worker.state is WorkerState.PROVISIONING:
        _provision_failed(store, clock, worker, "container or pod vanished", report)
        return []
    return _lose(store, clock, worker, "container or pod vanished", lost_requeues, report)


def _reload(store: Store, worker: Worker | None) -> Worker | None:
    if worker is None:
        return None
    with store.transaction() as tx:
        return tx.workers.get(worker.id)


def _remove(
    inspector: InfrastructureInspector,
    item: InfraWorker,
    worker: Worker | None,
    report: ReconcileReport,
) -> None:
    why = "orphan with no worker row" if worker is None else f"worker is {worker.state}"
    logger.info(
        "removing %s (%s)",
        item.ref,
        why,
        extra={"worker_id": str(item.worker_id) if item.worker_id else None},
    )
    inspector.remove(item.ref)
    report.removed.append(item.ref)


@dataclass
class RescheduleReport:
    scheduled: list[UUID] = field(default_factory=list)
    failed: list[UUID] = field(default_factory=list)


def reschedule_unschedulable(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    *,
    queue_timeout_s: float,
    limit: int = 1000,
) -> RescheduleReport:
    """Match PENDING jobs that had no provider again, oldest first (they are the first to
    time out); publish those that now have one, and fail those older than the queue
    timeout with ``no_provider``."""
    now = clock.now()
    report = RescheduleReport()
    scheduled: list[Job] = []
    reasons: dict[UUID, str] = {}
    with store.transaction() as tx:
        waiting = tx.jobs.waiting_for_provider(limit=limit)
        if not waiting:
            return report
        candidates = tx.providers.search_with_live_workers()
        for job in waiting:
            selection = select_provider(
                Requirements(job.spec.labels, job.spec.regions, job.spec.provider), candidates
            )
            if selection.chosen is not None and _assign(tx, now, job, selection.chosen):
                scheduled.append(_assigned(job, selection.chosen))
                reasons[job.id] = selection.reason
            elif now - job.created_at >= timedelta(seconds=queue_timeout_s) and _time_out(
                tx, now, job, selection.rejected, queue_timeout_s
            ):
                report.failed.append(job.id)
    report.scheduled = [j.id for j in scheduled]
    if scheduled:
        publish_jobs(store, clock, publisher, scheduled, reasons)
    return report


def _assign(tx: Transaction, now: datetime, job: Job, provider: Provider) -> bool:
    won = bool(
        tx.apply(transitions.assign(job, provider_id=provider.id, queue=provider.queue, now=now))
    )
    if won:
        logger.info(
            "Selected provider %s for job %s",
            provider.name,
            job.id,
            extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
        )
    return won


def _assigned(job: Job, provider: Provider) -> Job:
    from dataclasses import replace

    return replace(job, provider_id=provider.id, queue=provider.queue)


def _time_out(
    tx: Transaction, now: datetime, job: Job, rejected: dict[str, str], timeout_s: float
) -> bool:
    error = f"no provider could take the job within {timeout_s:g}s"
    change = transitions.fail(
        job,
        reason=FailureReason.NO_PROVIDER,
        actor=Actor.DISPATCHER,
        now=now,
        error=error,
        reasons=rejected,
    )
    if not tx.apply(change):
        return False
    logger.warning(
        "job %s failed: %s",
        job.id,
        error,
        extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
    )
    return True
