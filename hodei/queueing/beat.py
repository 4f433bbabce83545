"""Beat's scheduler for ``hodei scheduler``: it sends the maintenance tasks only while
its process leads (queueing/leader.py), and goes on from the previous leader's sends.

Celery's own PersistentScheduler keeps the last sends in a shelve file of its host; two
schedulers would each keep their own. This one keeps them in the database
(``beat_runs``): a scheduler that takes the lead sends each task one interval after the
previous leader last sent it, never sooner, so a change of leader sends no task twice
in an interval.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import ScheduleEntry, Scheduler

from hodei.errors import HodeiError

logger = logging.getLogger(__name__)

STANDBY_TICK_S = 0.5
"""How often a scheduler without the lead looks again."""


class LeaderBeatScheduler(Scheduler):  # type: ignore[misc]  # celery is untyped
    """Beat that sends only while ``app.hodei_leadership`` leads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._leading = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        leadership = getattr(self.app, "hodei_leadership", None)
        if leadership is None or not leadership.leading:
            if self._leading:
                logger.info("beat stands by: this scheduler does not lead")
            self._leading = False
            return min(STANDBY_TICK_S, float(self.max_interval))
        if not self._leading:
            self._take_over()
            self._leading = True
        return float(super().tick(*args, **kwargs))

    def _take_over(self) -> None:
        """Each task's last send, as the database knows it (now if it never was)."""
        from hodei.store.scheduler_state import last_beat_runs

        container = self.app.hodei_container
        try:
            last = last_beat_runs(container.engine)
        except HodeiError as exc:
            logger.warning("beat could not read the last sends (%s); counting from now", exc)
            last = {}
        now = self.app.now()
        for name, entry in list(self.schedule.items()):
            # Never later than now: a clock behind the last leader's must not wait long.
            entry.last_run_at = min(last.get(name, now), now)
        self._heap = None  # rebuilt from the entries on the next tick
        logger.info("beat leads: %d tasks, going on from the last sends", len(self.schedule))

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        from hodei.store.scheduler_state import record_beat_run

        # Recorded before it is sent: a leader killed between the two then costs one
        # interval of that (idempotent, periodic) task, where the other order let the
        # next leader send it again at once, twice within its interval.
        try:
            record_beat_run(self.app.hodei_container.engine, entry.name, self.app.now())
        except HodeiError as exc:
            logger.debug("could not record the send of %s: %s", entry.name, exc)
        super().apply_entry(entry, producer=producer)
