"""The thread of ``hodei scheduler`` that fires cron ticks while its process leads.

It sleeps until the soonest tick, at most a second (new and changed schedules are seen
within that), so a tick fires within about a second of its time, usually within a few
milliseconds.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from hodei.errors import DatabaseUnavailable, HodeiError
from hodei.services.jobs.schedules import fire_due, next_due_at

if TYPE_CHECKING:
    from hodei.bootstrap import Container
    from hodei.queueing.leader import Leadership

logger = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0
MIN_SLEEP_S = 0.005


class CronLoop:
    def __init__(self, container: Container, leadership: Leadership) -> None:
        self._c = container
        self._leadership = leadership
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hodei-cron", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def step(self) -> float:
        """Fire what is due if this process leads; the seconds to sleep."""
        if not self._leadership.leading:
            return MAX_SLEEP_S
        c = self._c
        if fire_due(c.store, c.clock, c.publisher).fired:
            # Workers for the new jobs now, not at beat's next provision pass (5 s).
            c.hodei.maintenance("provision")
        soonest = next_due_at(c.store)
        if soonest is None:
            return MAX_SLEEP_S
        wait = (soonest - c.clock.now()).total_seconds()
        return min(max(wait, MIN_SLEEP_S), MAX_SLEEP_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except DatabaseUnavailable as exc:  # logged once by the outage reporter
                logger.debug("cron pass skipped: %s", exc)
                wait = MAX_SLEEP_S
            except HodeiError as exc:
                logger.warning("cron pass failed: %s", exc)
                wait = MAX_SLEEP_S
            except Exception:  # the thread must outlive any one failure
                logger.exception("cron pass failed")
                wait = MAX_SLEEP_S
            self._stop.wait(wait)
