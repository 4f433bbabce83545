"""Building a provider's adapter (launcher, inspector, health probe) from its type.

The Docker and Kubernetes modules are imported only for providers of that type, so
the embedded default needs neither SDK. Each adapter's API calls go through this
process's circuit breaker for the provider, whose transitions are recorded as
health changes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from hodei.domain.records import Provider, Worker
from hodei.domain.states import ProviderHealth
from hodei.errors import InvalidConfiguration, MissingExtra, ProvisionFailed
from hodei.providers.breaker import BreakerState, breaker_for
from hodei.services.fleet.infra_failures import fail_waiting_jobs
from hodei.services.fleet.provider_health import record_breaker_transition
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import HealthReport, LaunchRequest
from hodei.services.ports.store import Store
from hodei.settings import Settings

logger = logging.getLogger(__name__)

# After a permanent refusal, further launches fail at once for this long (doubling
# up to the maximum) instead of asking the API again: no retry storm.
COOL_OFF_S = 30.0
MAX_COOL_OFF_S = 600.0


def adapter_for(provider: Provider, settings: Settings, store: Store, clock: Clock) -> Any:
    """The Docker or Kubernetes adapter of ``provider`` (launch, destroy, list_managed,
    remove, check), or the local provider's launcher: the one place that turns a
    provider's type into its adapter."""
    if provider.provider_type == "local":
        from hodei.providers.local import LocalLauncher

        return LocalLauncher(settings)
    if provider.provider_type not in ("docker", "kubernetes"):
        raise InvalidConfiguration(
            f"provider {provider.name}: type {provider.provider_type!r} has no launcher here"
        )

    def on_transition(name: str, old: BreakerState, new: BreakerState, why: str) -> None:
        record_breaker_transition(store, clock, name, str(old), str(new), why)

    breaker = breaker_for(provider.name, on_transition)
    _require_library(provider)
    if provider.provider_type == "docker":
        from hodei.providers.docker import DockerLauncher

        return GuardedLauncher(DockerLauncher(provider, settings, breaker), store, clock)
    from hodei.providers.kubernetes import KubernetesLauncher

    return GuardedLauncher(KubernetesLauncher(provider, settings, breaker), store, clock)


def _require_library(provider: Provider) -> None:
    """A one-line error naming the extra to install, instead of an ImportError's traceback
    from deep inside an adapter."""
    # Imported here: it loads pydantic, which a local launch (`hodei job run`) does
    # without.
    from hodei.providers.config import require_library

    try:
        require_library(provider.provider_type)
    except MissingExtra as exc:
        raise MissingExtra(f"provider {provider.name}: {exc}") from None


class LocalProbe:
    """The local machine is there as long as the control plane runs on it."""

    def check(self, timeout_s: float) -> HealthReport:
        return HealthReport(ProviderHealth.HEALTHY, "local processes")


def probe_for(provider: Provider, settings: Settings, store: Store, clock: Clock) -> Any:
    if provider.provider_type == "local":
        return LocalProbe()
    return adapter_for(provider, settings, store, clock)


_cool_off: dict[str, tuple[float, float, ProvisionFailed]] = {}
_cool_off_lock = threading.Lock()


class GuardedLauncher:
    """Wraps an adapter: a permanent refusal fails the provider's waiting jobs with an
    InfrastructureEvent, and later launches fail fast during a cool-off."""

    def __init__(self, inner: Any, store: Store, clock: Clock) -> None:
        self.inner = inner
        self.provider: Provider = inner.provider
        self._store = store
        self._clock = clock

    def launch(self, request: LaunchRequest) -> str:
        key = f"{self.provider.name}:{sorted(self.provider.config.items())}"
        with _cool_off_lock:
            until, _, error = _cool_off.get(key, (0.0, 0.0, None))
        if error is not None and time.monotonic() < until:
            again = ProvisionFailed(error.kind, f"{error.detail} (not retried for now)")
            fail_waiting_jobs(
                self._store, self._clock, self.provider, kind=again.kind, detail=error.detail
            )
            raise again
        try:
            ref: str = self.inner.launch(request)
        except ProvisionFailed as exc:
            if exc.permanent:
                self._refused(key, exc)
            raise
        with _cool_off_lock:
            _cool_off.pop(key, None)
        return ref

    def _refused(self, key: str, exc: ProvisionFailed) -> None:
        with _cool_off_lock:
            _, last, _ = _cool_off.get(key, (0.0, 0.0, None))
            pause = min(max(last * 2, COOL_OFF_S), MAX_COOL_OFF_S)
            _cool_off[key] = (time.monotonic() + pause, pause, exc)
        logger.error("provider %s refused a worker: %s", self.provider.name, exc)
        fail_waiting_jobs(self._store, self._clock, self.provider, kind=exc.kind, detail=exc.detail)

    def destroy(self, worker: Worker) -> None:
        self.inner.destroy(worker)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
