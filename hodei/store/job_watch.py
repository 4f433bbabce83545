"""Wake-ups for a caller waiting on one job (``Client.wait``, ``Client.follow_logs``):
pushed by PostgreSQL's NOTIFY, short polls on SQLite.

Every change of a job's state writes a domain event, whose statement trigger sends
``NOTIFY hodei_events`` at commit; every batch of output lines sends ``NOTIFY
hodei_logs`` with the job's id (:mod:`hodei.store.event_repository`). A watch LISTENs
before the caller's first read, so a commit after that read always wakes it. A
notification is only a hint: the caller reads the database after each wake-up, and a
safety-net timeout covers one lost with its connection.

SQLite has no notifications: the caller reads again after 20 ms, backing off to
``max_poll_s`` (50 ms unless asked otherwise); a read of one job by key is cheap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from uuid import UUID

from sqlalchemy.engine import Engine

from hodei.errors import DatabaseUnavailable
from hodei.store.event_repository import LOGS_CHANNEL
from hodei.store.listen import CHANNEL as EVENTS_CHANNEL
from hodei.store.listen import PgNotifications, conninfo

logger = logging.getLogger(__name__)

FIRST_POLL_S = 0.02
POLL_BACKOFF = 1.5
SQLITE_MAX_POLL_S = 0.05
# On PostgreSQL, reads between notifications only cover a lost one.
PG_SAFETY_POLL_S = 1.0


class JobWatch:
    """One waiter's wake-ups for one job."""

    def __init__(
        self, job_id: UUID, notifications: PgNotifications | None, *, max_poll_s: float
    ) -> None:
        self._job_id = str(job_id)
        self._notifications = notifications
        self._max_poll_s = max_poll_s
        self._next_poll_s = min(FIRST_POLL_S, max_poll_s)

    def wait(self, timeout_s: float | None = None) -> None:
        """Return when the job or its output may have changed (or after ``timeout_s``)."""
        limit = self._max_poll_s if timeout_s is None else min(timeout_s, self._max_poll_s)
        if self._notifications is None:
            time.sleep(min(limit, self._next_poll_s))
            self._next_poll_s = min(self._next_poll_s * POLL_BACKOFF, self._max_poll_s)
            return
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            try:
                notes = self._notifications.wait(left)
            except DatabaseUnavailable as exc:
                # Fall back to polling: the caller's read reports a real outage.
                logger.debug("job watch: %s", exc, extra={"job_id": self._job_id})
                time.sleep(min(left, FIRST_POLL_S))
                return
            if not notes:
                return
            # Any event may be this job's (the payload is only the newest event id);
            # output lines of other jobs are not.
            if any(n.channel == EVENTS_CHANNEL or n.payload == self._job_id for n in notes):
                return

    def changed(self) -> None:
        """Something arrived: poll quickly again (SQLite)."""
        self._next_poll_s = min(FIRST_POLL_S, self._max_poll_s)


class JobWatches:
    """Hands out :class:`JobWatch` es; on PostgreSQL it keeps one idle LISTEN connection
    for the next watch, so a ``wait`` does not open a connection each time."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = conninfo(engine) if engine.dialect.name == "postgresql" else None
        self._lock = threading.Lock()
        self._idle: PgNotifications | None = None

    @contextlib.contextmanager
    def watch(
        self, job_id: UUID, *, logs: bool = False, max_poll_s: float | None = None
    ) -> Iterator[JobWatch]:
        """A watch of the job's events (and, with ``logs``, its output lines); enter it
        before the first read."""
        if self._conninfo is None:
            yield JobWatch(job_id, None, max_poll_s=max_poll_s or SQLITE_MAX_POLL_S)
            return
        channels = (EVENTS_CHANNEL, LOGS_CHANNEL) if logs else (EVENTS_CHANNEL,)
        with self._lock:
            notifications, self._idle = self._idle, None
        if notifications is None:
            notifications = PgNotifications(self._conninfo)
        try:
            notifications.listen(channels)
        except DatabaseUnavailable as exc:
            logger.debug("job watch falls back to polling: %s", exc)
            yield JobWatch(job_id, None, max_poll_s=max_poll_s or SQLITE_MAX_POLL_S)
            return
        try:
            yield JobWatch(job_id, notifications, max_poll_s=max_poll_s or PG_SAFETY_POLL_S)
        finally:
            notifications.unlisten()
            with self._lock:
                keep = self._idle is None
                if keep:
                    self._idle = notifications
            if not keep:
                notifications.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            idle.close()
