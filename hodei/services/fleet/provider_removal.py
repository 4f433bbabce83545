"""``hodei provider remove``: delete a provider, refused while it still has work.

A provider with live workers, unfinished jobs or schedules naming it is only removed
with ``force``: its workers are then ended (TERMINATED, or PROVISION_FAILED if they never
registered) and its unfinished jobs FAILED, each with its event, in the transaction that
deletes it. Schedules naming it stay, each fire failing (ScheduleFailed, a ``doctor``
finding) until they are removed. The history stays readable: jobs and workers keep
their queue, events their payload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from hodei.domain import transitions
from hodei.domain.event_builders import provider_event
from hodei.domain.events import EventType
from hodei.domain.records import Job, Provider, Worker
from hodei.domain.states import (
    ACTIVE_STATES,
    LIVE_WORKER_STATES,
    FailureReason,
    WorkerState,
)
from hodei.errors import Conflict, ProviderNotFound
from hodei.services.fleet.workers import fail_provisioning
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import JobQuery, Store, Transaction

logger = logging.getLogger(__name__)

# More unfinished jobs than this on one provider: remove it in several goes.
_BATCH = 10_000


@dataclass(frozen=True)
class Removal:
    """The removed provider and what removing it ended."""

    provider: Provider
    ended_workers: list[Worker] = field(default_factory=list)
    failed_jobs: list[Job] = field(default_factory=list)


def remove_provider(store: Store, clock: Clock, name: str, *, force: bool, actor: str) -> Removal:
    """Delete ``name`` (ProviderRemoved). Without ``force``, :class:`Conflict` while it has
    workers holding capacity or unfinished jobs; an unused hand-issued token does not count."""
    now = clock.now()
    with store.transaction() as tx:
        provider = tx.providers.get_by_name(name)
        if provider is None:
            raise ProviderNotFound(f"no provider named {name!r}")
        tx.providers.lock(provider.id)
        workers = [
            w
            for w in tx.workers.search(states=LIVE_WORKER_STATES, queue=provider.queue, limit=1000)
            if w.provider_id == provider.id
        ]
        busy = [w for w in workers if w.holds_capacity]
        jobs = tx.jobs.search(JobQuery(states=ACTIVE_STATES, provider_id=provider.id, limit=_BATCH))
        if (busy or jobs) and not force:
            raise Conflict(
                f"provider {name} has {len(busy)} live worker(s) and {len(jobs)} unfinished "
                f"job(s): `hodei provider drain {name}` and let them finish, or remove it "
                "with --force (ends its workers and fails its jobs)"
            )
        # Every fire of a schedule naming it would fail from now on.
        schedules = sorted(s.name for s in tx.schedules.search() if s.spec.get("provider") == name)
        if schedules and not force:
            shown = ", ".join(schedules[:5]) + (" ..." if len(schedules) > 5 else "")
            raise Conflict(
                f"provider {name} is named by {len(schedules)} schedule(s): {shown};"
                " `hodei schedule remove` them (or add them again with another provider),"
                " or remove it with --force (their fires then fail until you do)"
            )
        reason = f"provider {name} was removed"
        ended = [w for w in workers if _end_worker(tx, now, w, reason, actor)]
        failed = [j for j in jobs if _fail_job(tx, now, j, reason, actor)]
        tx.events.add(
            provider_event(
                provider,
                EventType.PROVIDER_REMOVED,
                actor,
                now,
                provider_type=provider.provider_type,
                force=force,
                ended_workers=[str(w.id) for w in ended],
                failed_jobs=[str(j.id) for j in failed],
                schedules=schedules,
            )
        )
        tx.providers.delete(provider.id)
    logger.info(
        "Provider removed: %s (%d worker(s) ended, %d job(s) failed)",
        name,
        len(ended),
        len(failed),
    )
    return Removal(provider, ended, failed)


def _end_worker(tx: Transaction, now: datetime, worker: Worker, reason: str, actor: str) -> bool:
    if worker.state is WorkerState.PROVISIONING:
        return fail_provisioning(tx, now, worker, reason, actor=actor)
    return bool(tx.apply(transitions.terminate(worker, reason=reason, actor=actor, now=now)))


def _fail_job(tx: Transaction, now: datetime, job: Job, reason: str, actor: str) -> bool:
    no_provider = FailureReason.NO_PROVIDER
    return bool(
        tx.apply(transitions.fail(job, reason=no_provider, actor=actor, now=now, error=reason))
    )
