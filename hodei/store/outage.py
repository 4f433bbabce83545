"""One warning when the database goes, one line when it comes back (per process).

Every store call passes through ``database_errors()`` (hodei/store/engine.py), which
tells :data:`DATABASE` about each failure to reach the database and each success.
Long-running processes (worker, scheduler, serve) call :meth:`OutageReporter.announce`;
a one-shot CLI command does not: its one error line says it all. The callers
(heartbeat, cancel checks, output, finishes, claims, maintenance tasks) log their own
failures of that kind at debug only: a 15 s outage is two lines in a worker's log, not
one traceback per thread and tick.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("hodei.outage")


class OutageReporter:
    """Logs the transitions of one service between reachable and unreachable."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.down = False  # read without the lock on every success: one attribute read
        self._announce = False
        self._lock = threading.Lock()
        self._down_since = 0.0
        self._failures = 0
        self._up_since: float | None = None  # monotonic time of the last recovery seen

    def announce(self) -> None:
        """Log the transitions from now on (a long-running process)."""
        self._announce = True

    def failed(self, error: str) -> None:
        """A call could not reach the service."""
        with self._lock:
            self._failures += 1
            if self.down:
                return
            self.down = True
            self._down_since = time.monotonic()
        if not self._announce:
            return
        logger.warning(
            "%s unreachable: %s; retrying quietly until it answers",
            self.service,
            error,
        )

    def succeeded(self) -> None:
        """A call reached the service."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            now = time.monotonic()
            self._up_since = now
            lasted, failures = now - self._down_since, self._failures
            self._failures = 0
        if not self._announce:
            return
        logger.warning(
            "%s reachable again after %.1f s (%d failed call(s) meanwhile)",
            self.service,
            lasted,
            failures,
        )

    def reachable_for(self) -> float | None:
        """Seconds since this process last saw the service come back; None if it never
        saw it go (or it is down now: 0)."""
        if self.down:
            return 0.0
        return None if self._up_since is None else time.monotonic() - self._up_since


DATABASE = OutageReporter("database")
