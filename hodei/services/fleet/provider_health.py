"""Provider health: each provider is checked on its own interval and timeout
(``health_check``), the result stored on the provider, and every change recorded as
ProviderHealthChanged. Selection skips UNHEALTHY providers.

Circuit-breaker transitions are recorded the same way: an open breaker means the
provider cannot take work (UNHEALTHY), a half-open one is DEGRADED, a closed one
HEALTHY again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from hodei.domain import transitions
from hodei.domain.records import Provider
from hodei.domain.states import ProviderHealth, ProviderStatus
from hodei.errors import HodeiError
from hodei.services.fleet.provider_registry import DEFAULT_HEALTH_CHECK
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import HealthProbe, HealthReport
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)

_BREAKER_HEALTH = {
    "open": ProviderHealth.UNHEALTHY,
    "half-open": ProviderHealth.DEGRADED,
    "closed": ProviderHealth.HEALTHY,
}


def interval_s(provider: Provider) -> float:
    return float(provider.health_check.get("interval_s", DEFAULT_HEALTH_CHECK["interval_s"]))


def timeout_s(provider: Provider) -> float:
    return float(provider.health_check.get("timeout_s", DEFAULT_HEALTH_CHECK["timeout_s"]))


def is_due(provider: Provider, clock: Clock) -> bool:
    """Checked never, or longer ago than its interval. DISABLED providers are not checked."""
    if provider.status is ProviderStatus.DISABLED:
        return False
    last = provider.health_checked_at
    return last is None or clock.now() - last >= timedelta(seconds=interval_s(provider))


def check_providers(
    store: Store,
    clock: Clock,
    probe_for: Callable[[Provider], HealthProbe],
    *,
    only: str | None = None,
    force: bool = False,
) -> dict[str, HealthReport]:
    """Check every provider that is due (or ``only`` one, or all with ``force``)."""
    with store.transaction() as tx:
        providers = [p for p in tx.providers.search() if only is None or p.name == only]
    results: dict[str, HealthReport] = {}
    for provider in providers:
        if not force and not is_due(provider, clock):
            continue
        try:
            report = probe_for(provider).check(timeout_s(provider))
        except HodeiError as exc:  # a known cause (a missing library): its line says it all
            logger.info("health check of %s failed: %s", provider.name, exc)
            report = HealthReport(ProviderHealth.UNHEALTHY, str(exc))
        except Exception as exc:  # a broken probe must not stop the others' checks
            logger.exception("health check of %s crashed", provider.name)
            report = HealthReport(ProviderHealth.UNHEALTHY, f"health check crashed: {exc}")
        record_health(store, clock, provider.name, report)
        results[provider.name] = report
    return results


def record_health(
    store: Store, clock: Clock, name: str, report: HealthReport, **payload: object
) -> bool:
    """Store the result; a change writes ProviderHealthChanged. True if it changed."""
    now = clock.now()
    with store.transaction() as tx:
        provider = tx.providers.get_by_name(name)
        if provider is None:
            return False
        # A breaker transition is always worth an event, even when health stays the same.
        change = transitions.record_health(
            provider, report.health, report.message, now=now, **payload
        )
        tx.apply(change)
    changed = bool(change.events)
    if changed:
        log = logger.warning if report.health is ProviderHealth.UNHEALTHY else logger.info
        log(
            "provider %s health %s -> %s: %s",
            name,
            provider.health,
            report.health,
            report.message or "ok",
        )
    elif report.health is ProviderHealth.HEALTHY:
        logger.debug("Health check passed for %s", name)
    return changed


def record_breaker_transition(
    store: Store, clock: Clock, name: str, old: str, new: str, why: str
) -> None:
    """A circuit breaker moved: reflect it in the provider's health, with an event."""
    health = _BREAKER_HEALTH.get(new)
    if health is None:
        return
    message = f"circuit breaker {new}: {why}"
    record_health(
        store, clock, name, HealthReport(health, message), breaker={"from": old, "to": new}
    )
