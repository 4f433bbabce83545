"""A worker's life as the store sees it: register, heartbeat, drain, terminate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.events import Actor, DomainEvent
from hodei.domain.records import Worker, provider_of_queue
from hodei.domain.states import (
    LIVE_WORKER_STATES,
    ProviderStatus,
    WorkerState,
)
from hodei.errors import Conflict, ProviderNotFound, WorkerNotFound
from hodei.services.fleet.bootstrap_tokens import IssuedToken, consume_token, issue_token
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)


def create_worker_token(
    store: Store, clock: Clock, *, provider_name: str, ttl_s: float, actor: str
) -> IssuedToken:
    """Issue a token (and its worker row) for a worker started by hand."""
    with store.transaction() as tx:
        provider = tx.providers.get_by_name(provider_name)
        if provider is None:
            raise ProviderNotFound(f"no provider named {provider_name!r}")
        return issue_token(tx, clock.now(), provider=provider, ttl_s=ttl_s, actor=actor)


def register_worker(
    store: Store,
    clock: Clock,
    secret: str,
    *,
    infra_ref: str | None = None,
    also: Callable[[Transaction, Worker], None] | None = None,
) -> Worker:
    """Consume the bootstrap token and bring its worker to READY; ``also`` writes more
    in that same transaction (an API-mode worker's credential).

    Raises :class:`hodei.errors.TokenRejected` (after recording a TokenRejected event)
    when the token is unknown, expired or already consumed.
    """
    token = consume_token(store, clock, secret)
    now = clock.now()
    with store.transaction() as tx:
        worker = tx.workers.get(token.worker_id)
        if worker is None:
            raise WorkerNotFound(f"the token's worker {token.worker_id} no longer exists")
        tx.apply(transitions.register(worker, infra_ref=infra_ref, now=now))
        registered = tx.workers.get(worker.id)
        if also is not None and registered is not None:
            also(tx, registered)
    assert registered is not None
    logger.info(
        "worker %s registered on %s", worker.id, worker.queue, extra={"worker_id": str(worker.id)}
    )
    return registered


@dataclass(frozen=True)
class Pulse:
    """What a heartbeat learned: whether the worker should keep going."""

    state: WorkerState
    running_jobs: int
    waiting_jobs: int
    # One of the min_workers its provider keeps warm: the idle timeout does not stop it.
    keep_warm: bool = False

    @property
    def should_stop(self) -> bool:
        return self.state in (WorkerState.DRAINING, WorkerState.LOST, WorkerState.TERMINATED)


@dataclass(frozen=True)
class WorkerReport:
    """What a worker holds, as its recorded heartbeats store it."""

    jobs: tuple[UUID, ...]  # a command running, or an outcome not written yet
    pending_outcomes: int = 0


def heartbeat(
    store: Store,
    clock: Clock,
    worker_id: UUID,
    *,
    record: bool = True,
    report: Callable[[], WorkerReport] | None = None,
) -> Pulse:
    """Report the worker's state and the work around it; with ``record``, also store
    that it is alive (``last_heartbeat``) and, with ``report``, what it holds.

    ``report`` is called after the heartbeat's time is taken, so a job claimed before
    that time (its ``started_at`` earlier) is in it: ``hodei doctor`` relies on that."""
    now = clock.now()
    with store.transaction() as tx:
        if record:
            r = report() if report is not None else None
            tx.apply(
                transitions.heartbeat(
                    worker_id,
                    now=now,
                    reported_jobs=None if r is None else r.jobs,
                    pending_outcomes=None if r is None else r.pending_outcomes,
                )
            )
        worker = tx.workers.get(worker_id)
        if worker is None:
            raise WorkerNotFound(f"no worker {worker_id}")
        return Pulse(
            worker.state,
            tx.jobs.count_running_for_worker(worker_id),
            tx.jobs.count_waiting(worker.queue),
            keep_warm=_kept_warm(tx, worker),
        )


def _kept_warm(tx: Transaction, worker: Worker) -> bool:
    """Whether ``worker`` is one of the ``min_workers`` its provider keeps warm: the
    oldest live, not draining, workers on its queue. Picking by age (not "while the
    pool is not above min_workers") means exactly that many stay, and two idle workers
    never both exit, or both stay, on the same count."""
    name = provider_of_queue(worker.queue)
    provider = tx.providers.get_by_name(name) if name else None
    if provider is None or provider.status is not ProviderStatus.ACTIVE:
        return False
    if provider.min_workers <= 0:
        return False
    pool = [
        w
        for w in tx.workers.search(states=LIVE_WORKER_STATES, queue=worker.queue, limit=1000)
        # A hand-issued token nobody used yet is no worker to keep.
        if w.holds_capacity and w.state is not WorkerState.DRAINING
    ]
    pool.sort(key=lambda w: (w.created_at, str(w.id)))
    return any(w.id == worker.id for w in pool[: provider.min_workers])


def drain_worker(store: Store, clock: Clock, worker_id: UUID, *, actor: str) -> Worker:
    """Ask a worker to finish its current job and exit."""
    now = clock.now()
    with store.transaction() as tx:
        worker = tx.workers.get(worker_id)
        if worker is None:
            raise WorkerNotFound(f"no worker {worker_id}")
        if worker.state not in LIVE_WORKER_STATES:
            raise Conflict(f"worker {worker_id} is {worker.state}")
        if worker.state is WorkerState.DRAINING:
            return worker
        tx.apply(transitions.drain(worker, actor=actor, now=now))
        updated = tx.workers.get(worker_id)
    assert updated is not None
    return updated


def broker_lost(store: Store, clock: Clock, worker_id: UUID, *, reason: str) -> bool:
    """The worker cannot reach its broker (Celery is reconnecting): DEGRADED, with
    WorkerDegraded and ``reason``, so it is no READY capacity. False if it was not
    taking work (draining, ended) or is DEGRADED already."""
    now = clock.now()
    won = _change(store, worker_id, lambda w: transitions.degrade(w, reason=reason, now=now))
    if won:
        logger.warning(
            "worker %s is DEGRADED: %s", worker_id, reason, extra={"worker_id": str(worker_id)}
        )
    return won


def broker_back(store: Store, clock: Clock, worker_id: UUID, *, down_s: float) -> bool:
    """The worker reaches its broker again: READY, or BUSY if it runs a job."""
    now = clock.now()
    won = _change(store, worker_id, lambda w: transitions.reconnect(w, down_s=down_s, now=now))
    if won:
        logger.info(
            "worker %s reaches its broker again after %.1fs",
            worker_id,
            down_s,
            extra={"worker_id": str(worker_id)},
        )
    return won


def terminate_worker(store: Store, clock: Clock, worker_id: UUID, *, reason: str) -> bool:
    """Mark a worker TERMINATED as it exits; False if it was already LOST or gone."""
    now = clock.now()
    with store.transaction() as tx:
        worker = tx.workers.get(worker_id)
        if worker is None:
            return False
        actor = Actor.worker(worker_id)
        won = bool(tx.apply(transitions.terminate(worker, reason=reason, actor=actor, now=now)))
    logger.info("worker %s terminated: %s", worker_id, reason, extra={"worker_id": str(worker_id)})
    return won


def fail_provisioning(
    tx: Transaction,
    now: datetime,
    worker: Worker,
    reason: str,
    *,
    actor: str,
    cause: DomainEvent | None = None,
) -> bool:
    """Within ``tx``: a worker that never registered becomes PROVISION_FAILED, with its
    event (after ``cause``'s, when given); False if it is no longer PROVISIONING (it
    registered, or another pass won)."""
    change = transitions.provision_failed(worker, reason=reason, actor=actor, now=now, cause=cause)
    return bool(tx.apply(change))


def _change(
    store: Store, worker_id: UUID, change: Callable[[Worker], transitions.Transition]
) -> bool:
    """Apply ``change`` to the worker as stored, in one transaction: False if the worker
    is gone or no longer in a state the change starts from."""
    with store.transaction() as tx:
        worker = tx.workers.get(worker_id)
        return worker is not None and bool(tx.apply(change(worker)))
