"""A circuit breaker for calls to a provider's API (Docker engine, Kubernetes API).

closed: calls pass; ``failure_threshold`` failures in a row open it.
open: calls fail at once with :class:`CircuitOpen` for ``reset_timeout_s``.
half-open: up to ``trial_calls`` calls are let through; that many successes close it,
any failure opens it again.

A small class of our own rather than pybreaker: pybreaker lets every call through while
half-open, has no bound on trial calls, and its listeners would still need this
module's glue to record transitions as hodei events. Only transport failures count:
the caller decides what is a failure (a 404 for a missing image is an answer, not an
outage), by raising from the call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from hodei.errors import CircuitOpen, ProviderUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


Listener = Callable[[str, BreakerState, BreakerState, str], None]


class CircuitBreaker:
    """Guards one provider's API calls; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 60.0,
        trial_calls: int = 3,
        listener: Listener | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.trial_calls = trial_calls
        self.listener = listener
        self._now = monotonic
        self._lock = threading.RLock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials_started = 0
        self._trial_successes = 0
        self.last_error = ""

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def call(self, fn: Callable[[], T], *, counts: Callable[[BaseException], bool]) -> T:
        """Run ``fn`` through the breaker; an exception for which ``counts`` is true is
        a failure, any other exception (or a return) is a success."""
        self._before()
        try:
            result = fn()
        except BaseException as exc:
            if counts(exc):
                self._failure(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            else:
                self._success()
            raise
        self._success()
        return result

    def call_translated(
        self,
        fn: Callable[[], T],
        *,
        counts: Callable[[BaseException], bool],
        translate: Callable[[Exception], Exception],
    ) -> T:
        """:meth:`call`, with any error that is not already a ProviderUnavailable (which
        includes ProvisionFailed) turned into hodei's own by ``translate``."""
        try:
            return self.call(fn, counts=counts)
        except ProviderUnavailable:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def reset(self) -> None:
        """Close the breaker by hand."""
        with self._lock:
            self._move(BreakerState.CLOSED, "reset")

    def _before(self) -> None:
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.OPEN:
                left = self.reset_timeout_s - (self._now() - self._opened_at)
                raise CircuitOpen(
                    f"provider {self.name}: circuit breaker open for another {left:.0f}s "
                    f"after {self.failure_threshold} failures (last: {self.last_error})"
                )
            if self._state is BreakerState.HALF_OPEN:
                if self._trials_started >= self.trial_calls:
                    raise CircuitOpen(
                        f"provider {self.name}: circuit breaker half-open, "
                        f"{self.trial_calls} trial calls already in flight"
                    )
                self._trials_started += 1

    def _success(self) -> None:
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._trial_successes += 1
                if self._trial_successes >= self.trial_calls:
                    self._move(BreakerState.CLOSED, f"{self.trial_calls} trial calls succeeded")
            self._failures = 0

    def _failure(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            if self._state is BreakerState.HALF_OPEN:
                self._move(BreakerState.OPEN, f"trial call failed: {error}")
                return
            self._failures += 1
            if self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._move(BreakerState.OPEN, f"{self._failures} failures in a row: {error}")

    def _maybe_half_open(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._now() - self._opened_at >= self.reset_timeout_s
        ):
            self._move(BreakerState.HALF_OPEN, f"{self.reset_timeout_s:g}s passed")

    def _move(self, new: BreakerState, why: str) -> None:
        old = self._state
        self._state = new
        self._failures = 0
        self._trials_started = 0
        self._trial_successes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._now()
        if old is new:
            return
        log = logger.warning if new is BreakerState.OPEN else logger.info
        log("circuit breaker state changed from=%s to=%s provider=%s: %s", old, new, self.name, why)
        if self.listener is not None:
            try:
                self.listener(self.name, old, new, why)
            except Exception:  # recording a transition must never break the call path
                logger.exception("could not record a breaker transition of %s", self.name)


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(name: str, listener: Listener | None = None) -> CircuitBreaker:
    """This process's breaker for provider ``name`` (one per provider per process)."""
    with _registry_lock:
        breaker = _registry.get(name)
        if breaker is None:
            breaker = _registry[name] = CircuitBreaker(name, listener=listener)
        elif listener is not None:
            breaker.listener = listener  # the newest wiring records the transitions
        return breaker
