"""The threads of ``hodei scheduler`` that act at a time of their own while its process
leads: the cron ticks (:func:`cron_loop`) and the due times of held jobs
(:func:`due_jobs_loop`). Each is a :class:`LeaderLoop`: a pass, then a sleep until the
soonest time the pass reported, bounded, so that a time falls within a few
milliseconds of its moment and something new is seen within the bound."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from hodei.errors import DatabaseUnavailable, HodeiError

if TYPE_CHECKING:
    from hodei.bootstrap import Container
    from hodei.queueing.leader import Leadership
    from hodei.services.ports.clock import Clock

logger = logging.getLogger(__name__)

MIN_SLEEP_S = 0.005

Tick = Callable[[], datetime | None]  # one pass; the soonest time of the next, if any


class LeaderLoop:
    """A daemon thread (``hodei-<name>``) that, while ``leadership`` leads, calls
    ``tick`` and sleeps until the time it returns: at least MIN_SLEEP_S, at most
    ``max_sleep_s`` (also when there is no such time, or the process does not lead).
    A failed pass is logged and the loop goes on."""

    def __init__(
        self,
        name: str,
        leadership: Leadership,
        clock: Clock,
        tick: Tick,
        *,
        max_sleep_s: float,
    ) -> None:
        self.name = name
        self.max_sleep_s = max_sleep_s
        self._leadership = leadership
        self._clock = clock
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hodei-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def step(self) -> float:
        """One pass if this process leads; the seconds to sleep."""
        if not self._leadership.leading:
            return self.max_sleep_s
        soonest = self._tick()
        if soonest is None:
            return self.max_sleep_s
        wait = (soonest - self._clock.now()).total_seconds()
        return min(max(wait, MIN_SLEEP_S), self.max_sleep_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except DatabaseUnavailable as exc:  # logged once by the outage reporter
                logger.debug("%s pass skipped: %s", self.name, exc)
                wait = self.max_sleep_s
            except HodeiError as exc:
                logger.warning("%s pass failed: %s", self.name, exc)
                wait = self.max_sleep_s
            except Exception:  # the thread must outlive any one failure
                logger.exception("%s pass failed", self.name)
                wait = self.max_sleep_s
            self._stop.wait(wait)


def cron_loop(container: Container, leadership: Leadership) -> LeaderLoop:
    """Fire the schedules' due ticks (services/jobs/schedules.py); at most a second apart,
    so new and changed schedules are seen within a second."""
    from hodei.services.jobs.schedules import fire_due, next_due_at

    c = container

    def tick() -> datetime | None:
        if fire_due(c.store, c.clock, c.publisher).fired:
            # Workers for the new jobs now, not at beat's next provision pass (5 s).
            c.hodei.maintenance("provision")
        return next_due_at(c.store)

    return LeaderLoop("cron", leadership, c.clock, tick, max_sleep_s=1.0)


def due_jobs_loop(container: Container, leadership: Leadership) -> LeaderLoop:
    """Release the held jobs that are due (services/jobs/gates.py): within a fraction of a
    second of their time, not at beat's next pass (whose release_gated sweeps for the
    rest). At most 0.2 s apart, so a job submitted for sooner is seen within that; each
    pass is one indexed query (ix_jobs_held_hold_until)."""
    from hodei.services.jobs.gates import next_due, release_due

    c = container

    def tick() -> datetime | None:
        if release_due(c.store, c.clock, c.publisher, sweep=False).released:
            # Workers for them now, not at beat's next provision pass (5 s).
            c.hodei.maintenance("provision")
        return next_due(c.store)

    return LeaderLoop("due", leadership, c.clock, tick, max_sleep_s=0.2)
