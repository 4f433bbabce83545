"""What a provider's infrastructure failing does: an InfrastructureEvent on the
worker's and the jobs' timelines, and, on a permanent refusal to provision, every job
waiting for the provider failed. (What the infrastructure is, as services see it, is
the port :mod:`hodei.services.ports.providers`.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.event_builders import job_event, worker_event
from hodei.domain.events import Actor, EventType
from hodei.domain.records import Job, Provider, Worker
from hodei.domain.states import FailureReason, JobState
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import EventQuery, JobQuery, Store, Transaction

logger = logging.getLogger(__name__)


def infrastructure_event(
    tx: Transaction,
    now: datetime,
    *,
    worker: Worker | None,
    jobs: Sequence[Job],
    kind: str,
    detail: str,
    **payload: Any,
) -> None:
    """Record an InfrastructureEvent on the worker's and each job's timeline."""
    body = {"kind": kind, "detail": detail, **payload}
    if worker is not None:
        tx.events.add(
            worker_event(
                worker, EventType.INFRASTRUCTURE_EVENT, actor=Actor.PROVISIONER, now=now, **body
            )
        )
    for job in jobs:
        tx.events.add(
            job_event(
                job,
                EventType.INFRASTRUCTURE_EVENT,
                actor=Actor.PROVISIONER,
                now=now,
                worker_id=worker.id if worker else None,
                **body,
            )
        )


def already_recorded(tx: Transaction, worker_id: UUID, kind: str) -> bool:
    """Whether this worker already has an InfrastructureEvent of ``kind`` (reconcile
    runs every few seconds; a pod stuck Unschedulable is reported once)."""
    events = tx.events.search(
        EventQuery(
            aggregate_ids=[worker_id],
            event_types=[str(EventType.INFRASTRUCTURE_EVENT)],
            limit=50,
        )
    )
    return any(e.payload.get("kind") == kind for e in events)


def fail_waiting_jobs(
    store: Store, clock: Clock, provider: Provider, *, kind: str, detail: str
) -> list[Job]:
    """A permanent provisioning error: every job waiting for ``provider`` fails now
    (provisioning_failed) with an InfrastructureEvent, instead of relaunching workers
    that cannot start. Returns the failed jobs."""
    now = clock.now()
    failed: list[Job] = []
    with store.transaction() as tx:
        waiting = tx.jobs.search(
            JobQuery(
                states=[JobState.PENDING, JobState.QUEUED], provider_id=provider.id, limit=1000
            )
        )
        for job in waiting:
            if not _fail(tx, now, job, kind, detail):
                continue
            failed.append(job)
            infrastructure_event(
                tx, now, worker=None, jobs=[job], kind=kind, detail=detail, provider=provider.name
            )
    for job in failed:
        logger.error(
            "job %s failed: provider %s cannot start workers: %s: %s",
            job.id,
            provider.name,
            kind,
            detail,
            extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
        )
    return failed


def _fail(tx: Transaction, now: datetime, job: Job, kind: str, detail: str) -> bool:
    error = f"{kind}: {detail}"
    reason = FailureReason.PROVISIONING_FAILED
    return bool(
        tx.apply(
            transitions.fail(job, reason=reason, actor=Actor.PROVISIONER, now=now, error=error)
        )
    )
