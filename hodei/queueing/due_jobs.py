"""The thread of ``hodei scheduler`` that releases held jobs at their due time while its
process leads (services/gates.py): within a fraction of a second of it, not at beat's
next pass. It sleeps until the soonest due time, at most 0.2 s (a job submitted for
sooner is seen within that); each pass is one indexed query (ix_jobs_held_hold_until)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from hodei.errors import DatabaseUnavailable, HodeiError
from hodei.services.jobs.gates import next_due, release_due

if TYPE_CHECKING:
    from hodei.bootstrap import Container
    from hodei.queueing.leader import Leadership

logger = logging.getLogger(__name__)

MAX_SLEEP_S = 0.2
MIN_SLEEP_S = 0.005


class DueJobs:
    def __init__(self, container: Container, leadership: Leadership) -> None:
        self._c = container
        self._leadership = leadership
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hodei-due", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def step(self) -> float:
        """Release the held jobs that are due if this process leads; the seconds to sleep
        (beat's release_gated sweeps for the rest)."""
        if not self._leadership.leading:
            return MAX_SLEEP_S
        c = self._c
        if release_due(c.store, c.clock, c.publisher, sweep=False).released:
            # Workers for them now, not at beat's next provision pass (5 s).
            c.hodei.maintenance("provision")
        soonest = next_due(c.store)
        if soonest is None:
            return MAX_SLEEP_S
        wait = (soonest - c.clock.now()).total_seconds()
        return min(max(wait, MIN_SLEEP_S), MAX_SLEEP_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except DatabaseUnavailable as exc:  # logged once by the outage reporter
                logger.debug("due-time pass skipped: %s", exc)
                wait = MAX_SLEEP_S
            except HodeiError as exc:
                logger.warning("due-time pass failed: %s", exc)
                wait = MAX_SLEEP_S
            except Exception:  # the thread must outlive any one failure
                logger.exception("due-time pass failed")
                wait = MAX_SLEEP_S
            self._stop.wait(wait)
