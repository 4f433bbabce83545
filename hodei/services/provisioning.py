"""Scaling a provider's workers to its queued work (launch on submit, reconcile on beat)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hodei.domain import transitions
from hodei.domain.events import Actor
from hodei.domain.records import Provider, Worker
from hodei.domain.states import (
    LAUNCHING_REF,
    LIVE_WORKER_STATES,
    ProviderHealth,
    ProviderStatus,
    WorkerState,
)
from hodei.errors import HodeiError
from hodei.services.health import HealthReport, record_health
from hodei.services.ports import Clock, LaunchRequest, Store, WorkerLauncher
from hodei.services.tokens import IssuedToken, issue_token
from hodei.services.workers import fail_provisioning

logger = logging.getLogger(__name__)

_STARTING_OR_IDLE = frozenset({WorkerState.PROVISIONING, WorkerState.REGISTERED, WorkerState.READY})


@dataclass(frozen=True)
class ScalePlan:
    """How many workers a provider needs launched now, and why."""

    launch: int
    waiting: int
    live: int
    idle_or_starting: int


def plan_scale(provider: Provider, *, waiting: int, live: int, idle_or_starting: int) -> ScalePlan:
    """Launch while waiting work exceeds idle plus starting workers, within max_workers,
    and keep min_workers warm. Nothing for a provider that is not ACTIVE, or UNHEALTHY
    (its health check failed, or its circuit breaker is open): a launch there would
    fail and leave a PROVISION_FAILED worker behind every pass until it recovers."""
    if provider.status is not ProviderStatus.ACTIVE or provider.health is ProviderHealth.UNHEALTHY:
        return ScalePlan(0, waiting, live, idle_or_starting)
    room = max(provider.max_workers - live, 0)
    wanted = max(waiting - idle_or_starting, provider.min_workers - live, 0)
    return ScalePlan(min(wanted, room), waiting, live, idle_or_starting)


def provision(
    store: Store,
    clock: Clock,
    launcher_for: Callable[[Provider], WorkerLauncher],
    provider_name: str,
    *,
    token_ttl_s: float,
    environment: dict[str, str],
    stale_after_s: float | None = None,
) -> list[IssuedToken]:
    """Launch the workers ``provider_name`` needs now; returns those launched.

    Capacity is held by the workers that have (or are getting) a process: a token issued
    by hand that nothing has presented holds none. A registered worker silent for
    ``stale_after_s`` still holds its slot until the reaper declares it LOST, but is not
    counted as idle, so the job it would never take gets a worker of its own."""
    issued = _reserve(store, clock, provider_name, token_ttl_s, stale_after_s)
    if not issued:
        return []
    provider, tokens = issued
    try:
        launcher = launcher_for(provider)
    except HodeiError as exc:
        # It cannot launch anything here (its library is missing, its config cannot
        # work): say so on each reserved worker, and stop launching until it recovers.
        for token in tokens:
            _launch_failed(store, clock, token, str(exc))
        record_health(store, clock, provider.name, HealthReport(ProviderHealth.UNHEALTHY, str(exc)))
        return []
    launched = []
    for token in tokens:
        request = LaunchRequest(
            token.worker.id,
            token.worker.name,
            provider.queue,
            token.secret,
            provider,
            environment,
        )
        try:
            infra_ref = launcher.launch(request)
        except HodeiError as exc:
            _launch_failed(store, clock, token, str(exc))
            continue
        _launched(store, clock, token, infra_ref)
        launched.append(token)
    return launched


def _reserve(
    store: Store,
    clock: Clock,
    provider_name: str,
    token_ttl_s: float,
    stale_after_s: float | None,
) -> tuple[Provider, Sequence[IssuedToken]] | None:
    now = clock.now()
    with store.transaction() as tx:
        provider = tx.providers.get_by_name(provider_name)
        if provider is None:
            return None
        tx.providers.lock(provider.id)
        rows = tx.workers.search(states=LIVE_WORKER_STATES, queue=provider.queue, limit=1000)
        live = [w for w in rows if w.holds_capacity]
        plan = plan_scale(
            provider,
            waiting=tx.jobs.count_waiting(provider.queue),
            live=len(live),
            idle_or_starting=sum(
                1 for w in live if _may_take_work(w, now, stale_after_s, token_ttl_s)
            ),
        )
        if plan.launch == 0:
            return None
        logger.info(
            "provider %s: %d waiting, %d live, %d idle or starting: launching %d",
            provider.name,
            plan.waiting,
            plan.live,
            plan.idle_or_starting,
            plan.launch,
        )
        tokens = [
            issue_token(
                tx,
                now,
                provider=provider,
                ttl_s=token_ttl_s,
                actor=Actor.PROVISIONER,
                infra_ref=LAUNCHING_REF,
            )
            for _ in range(plan.launch)
        ]
    return provider, tokens


def _may_take_work(
    worker: Worker, now: datetime, stale_after_s: float | None, token_ttl_s: float
) -> bool:
    """Idle or starting, and (once registered) not silent past the reaper's limit.

    A launch older than a token's lifetime is not starting: its token has expired, so it
    can never register (it died before it did). Without a scheduler to expire it, taking
    it for a worker on its way left every later job on its queue waiting forever."""
    if worker.state not in _STARTING_OR_IDLE:
        return False
    if worker.state is WorkerState.PROVISIONING:
        return now - worker.created_at <= timedelta(seconds=token_ttl_s)
    if stale_after_s is None:
        return True
    return now - worker.last_sign_of_life <= timedelta(seconds=stale_after_s)


def _launched(store: Store, clock: Clock, token: IssuedToken, infra_ref: str) -> None:
    now = clock.now()
    with store.transaction() as tx:
        tx.apply(transitions.launched(token.worker.id, infra_ref=infra_ref, now=now))
    logger.info(
        "launched worker %s (%s)",
        token.worker.id,
        infra_ref,
        extra={"worker_id": str(token.worker.id)},
    )


def _launch_failed(store: Store, clock: Clock, token: IssuedToken, error: str) -> None:
    now = clock.now()
    worker = token.worker
    logger.error(
        "could not launch worker %s: %s", worker.id, error, extra={"worker_id": str(worker.id)}
    )
    with store.transaction() as tx:
        fail_provisioning(tx, now, worker, error, actor=Actor.PROVISIONER)
