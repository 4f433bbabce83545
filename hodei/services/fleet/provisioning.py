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
from hodei.services.fleet.bootstrap_tokens import IssuedToken, issue_token
from hodei.services.fleet.launches import fail_dead_launches, in_flight
from hodei.services.fleet.provider_health import record_health
from hodei.services.fleet.workers import fail_provisioning
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import HealthReport, LaunchRequest, WorkerLauncher
from hodei.services.ports.store import Store

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
    counted as idle, so the job it would never take gets a worker of its own. A launch
    still registering that stands in the way of one is first checked with its provider:
    if its process, container or pod has ended, it is PROVISION_FAILED and holds nothing
    (services/fleet/launches.py)."""
    launcher: WorkerLauncher | None = None
    reserved = _reserve(store, clock, provider_name, token_ttl_s, stale_after_s, doubt=True)
    if isinstance(reserved, _Doubtful):
        try:
            launcher = launcher_for(reserved.provider)
        except HodeiError:
            pass  # said below, where a launch needs it
        else:
            fail_dead_launches(store, clock, launcher, reserved.launches)
        reserved = _reserve(store, clock, provider_name, token_ttl_s, stale_after_s, doubt=False)
    if reserved is None or isinstance(reserved, _Doubtful):
        return []
    provider, tokens = reserved
    try:
        launcher = launcher or launcher_for(provider)
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


@dataclass(frozen=True)
class _Doubtful:
    """Launches in flight without which the plan would launch more: ask their provider
    whether they are still alive before deciding."""

    provider: Provider
    launches: list[Worker]


def _reserve(
    store: Store,
    clock: Clock,
    provider_name: str,
    token_ttl_s: float,
    stale_after_s: float | None,
    *,
    doubt: bool,
) -> tuple[Provider, Sequence[IssuedToken]] | _Doubtful | None:
    now = clock.now()
    with store.transaction() as tx:
        provider = tx.providers.get_by_name(provider_name)
        if provider is None:
            return None
        tx.providers.lock(provider.id)
        rows = tx.workers.search(states=LIVE_WORKER_STATES, queue=provider.queue, limit=1000)
        live = [w for w in rows if w.holds_capacity]
        waiting = tx.jobs.count_waiting(provider.queue)

        def plan_without(left_out: Sequence[Worker]) -> ScalePlan:
            left = {w.id for w in left_out}
            counted = [w for w in live if w.id not in left]
            return plan_scale(
                provider,
                waiting=waiting,
                live=len(counted),
                idle_or_starting=sum(
                    1 for w in counted if _may_take_work(w, now, stale_after_s, token_ttl_s)
                ),
            )

        plan = plan_without(())
        launches = in_flight(live) if doubt else []
        # The provider is asked only when it matters (nothing is asked on the warm path),
        # and outside this transaction, which holds the provider's lock.
        if launches and plan_without(launches).launch > plan.launch:
            return _Doubtful(provider, launches)
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
