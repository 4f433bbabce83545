"""A worker's link to its broker as Celery's consumer sees it, and the store told of
each change: DEGRADED while the link is lost (Celery reconnects, for about
HODEI_BROKER_WAIT), READY or BUSY again once it is back.

The consumer only notes the change (it must not wait on the database while it
reconnects); the worker's housekeeping thread writes it, and tries again on its next
tick if the database does not answer."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from hodei.settings import mask_url

if TYPE_CHECKING:  # the type only
    from hodei.runtime.control_plane import ControlPlane


class BrokerLink:
    """Lost or up, as the consumer last said; what the store was last told."""

    def __init__(self, broker_url: str, wait_s: float) -> None:
        self._url = mask_url(broker_url)
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._lost_at: float | None = None
        self._error = ""
        self._recorded_lost: float | None = None  # when the lost link it recorded began

    def lost(self, exc: BaseException) -> None:
        """From Celery's connection-loss handling. Only the error's type is kept: its
        message may quote a broker URL with its password."""
        with self._lock:
            if self._lost_at is None:
                self._lost_at = time.monotonic()
                self._error = type(exc).__name__

    def connected(self) -> None:
        """The consumer's connection is established (again)."""
        with self._lock:
            self._lost_at = None

    def record(self, control: ControlPlane) -> None:
        """Tell the control plane of a change not recorded yet (raises what it raises)."""
        with self._lock:
            lost_at, error, recorded = self._lost_at, self._error, self._recorded_lost
        if lost_at is not None and recorded is None:
            reason = (
                f"cannot reach its broker at {self._url} ({error}); Celery reconnects for "
                f"up to {self._wait_s:g}s (HODEI_BROKER_WAIT)"
            )
            control.broker_lost(reason)
            self._recorded_lost = lost_at
        elif lost_at is None and recorded is not None:
            control.broker_back(time.monotonic() - recorded)
            self._recorded_lost = None


def consumer_class(base: type[Any], link: BrokerLink) -> type[Any]:
    """Celery's consumer, telling ``link`` when its broker connection is lost and when
    it is established again."""

    class LinkWatchingConsumer(base):  # type: ignore[misc,valid-type]
        def connect(self) -> Any:
            connection = super().connect()
            link.connected()
            return connection

        def ensure_connected(self, conn: Any) -> Any:
            # Each failed try of Celery's (re)connect loop, the first connect included,
            # goes to the errback it passes: note the loss from the first one.
            retry = conn.ensure_connection

            def noting(errback: Any = None, *args: Any, **kwargs: Any) -> Any:
                def lost_then(exc: BaseException, interval: float) -> Any:
                    link.lost(exc)
                    return errback(exc, interval) if errback is not None else None

                return retry(lost_then, *args, **kwargs)

            conn.ensure_connection = noting
            return super().ensure_connected(conn)

        def on_connection_error_after_connected(self, exc: BaseException) -> None:
            link.lost(exc)
            super().on_connection_error_after_connected(exc)

        def on_connection_error_before_connected(self, exc: BaseException) -> None:
            link.lost(exc)
            super().on_connection_error_before_connected(exc)

    return LinkWatchingConsumer
