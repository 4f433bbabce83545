"""Launches whose process, container or pod is known to have ended before the worker
registered (killed, crashed at start): they become PROVISION_FAILED with the provider's
reason, so they hold no capacity and are no worker "starting" for a queue.

Without this such a launch held its provider's slot until ``expire_tokens`` ran after
its token's lifetime, and on the embedded default, with no scheduler, every later job of
its queue waited for nothing (docs/architecture.md, "One job, end to end", 3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

from hodei.domain.events import Actor
from hodei.domain.records import Provider, Worker
from hodei.domain.states import LAUNCHING_REF, WorkerState
from hodei.errors import HodeiError
from hodei.services.fleet.workers import fail_provisioning
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import WorkerLauncher
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)


def in_flight(workers: Iterable[Worker]) -> list[Worker]:
    """Launched workers not registered yet: PROVISIONING with the provider's handle."""
    return [
        w
        for w in workers
        if w.state is WorkerState.PROVISIONING and w.infra_ref not in (None, LAUNCHING_REF)
    ]


def fail_dead_launches(
    store: Store, clock: Clock, launcher: WorkerLauncher, launches: Sequence[Worker]
) -> list[Worker]:
    """PROVISION_FAILED for each of ``launches`` its provider knows has ended; those."""
    failed = []
    for worker in launches:
        try:
            reason = launcher.exited(worker)
        except HodeiError as exc:  # the provider cannot tell now: it may still start
            logger.debug("could not check worker %s: %s", worker.id, exc)
            continue
        if reason is None:
            continue
        with store.transaction() as tx:
            if not fail_provisioning(tx, clock.now(), worker, reason, actor=Actor.PROVISIONER):
                continue  # it registered meanwhile, or another pass won
        logger.warning(
            "worker %s could not start: %s", worker.id, reason, extra={"worker_id": str(worker.id)}
        )
        failed.append(worker)
    return failed


def settle_launches(
    store: Store,
    clock: Clock,
    launcher_for: Callable[[Provider], WorkerLauncher],
    provider_ids: Iterable[UUID | None] | None = None,
) -> list[Worker]:
    """For the given providers (all when None): fail their launches known dead. What
    ``status`` and ``diagnose`` do first, so neither counts one as capacity or as a
    worker on its way. A provider that cannot be asked is skipped."""
    with store.reading() as tx:
        providers = {p.id: p for p in tx.providers.search()}
        launches = in_flight(tx.workers.search(states=[WorkerState.PROVISIONING], limit=1000))
    wanted = None if provider_ids is None else set(provider_ids)
    failed: list[Worker] = []
    for provider in providers.values():
        mine = [w for w in launches if w.provider_id == provider.id]
        if not mine or (wanted is not None and provider.id not in wanted):
            continue
        try:
            launcher = launcher_for(provider)
        except HodeiError:
            continue
        failed += fail_dead_launches(store, clock, launcher, mine)
    return failed
