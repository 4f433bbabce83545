"""Which of several ``hodei scheduler`` processes leads (docs/architecture.md, "More
than one scheduler").

The lead is a lock the operating system or the database holds for a live process, and
gives back the moment it dies, so no lease has to run out:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection
  of its own, with TCP keepalives, so a leader that vanishes from the network loses
  its session (and the lock) within seconds. The leader checks its session every
  second and steps down as soon as it cannot reach it.
- SQLite: an exclusive ``flock`` on a file beside the database (every scheduler of a
  SQLite database runs on its machine).

Every second a standby tries to take the lock. Only the leader's beat sends the
maintenance tasks and only it fires cron ticks; what it does is also guarded in the
database (a fire is unique per schedule and tick), so a short overlap cannot double a job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy.engine import Engine, make_url

from hodei.errors import HodeiError
from hodei.services.ports.clock import Clock

logger = logging.getLogger(__name__)

ADVISORY_KEY = 0x686F_6465_6900_0001
"""The advisory lock's key: 'hodei' in ASCII and 1. Any 64-bit number would do; it only
has to be the same in every scheduler and different from other applications' keys."""

CHECK_INTERVAL_S = 1.0
"""How often a standby tries to take the lead and the leader checks it still holds it."""

RENEW_INTERVAL_S = 5.0
"""How often the leader rewrites its ``scheduler_leader`` row (what status shows)."""


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process holds it now."""
        ...

    def held(self) -> bool:
        """Whether this process still holds the lock (False if its session is gone)."""
        ...

    def release(self) -> None: ...


class PostgresAdvisoryLock:
    """A session advisory lock on a dedicated psycopg connection (not the pool's: a
    pooled connection goes back to others with the lock still on it)."""

    def __init__(self, database_url: str, holder: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._holder = holder
        self._connection: object | None = None

    def _connect(self) -> object:
        import psycopg

        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name=self._holder[:63],
            # A dead peer is noticed in about 10 s on both sides, a stuck send in 5 s.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=5000,
        )

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._connection is None:
                self._connection = self._connect()
            cursor = self._connection.execute(  # type: ignore[attr-defined]
                "SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)
            )
            row = cursor.fetchone()
        except psycopg.Error as exc:
            logger.debug("cannot try the scheduler lock: %s", exc)
            self.release()
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        import psycopg

        if self._connection is None:
            return False
        try:
            cursor = self._connection.execute(  # type: ignore[attr-defined]
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid() AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = %s",
                (ADVISORY_KEY,),
            )
            row = cursor.fetchone()
        except psycopg.Error as exc:
            logger.warning("lost the scheduler lock's database session: %s", exc)
            self.release()
            return False
        return bool(row and row[0])

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()  # type: ignore[attr-defined]  # ending the session frees the lock
            except Exception:  # it is gone either way
                logger.debug("closing the scheduler lock's session failed", exc_info=True)


class FileLock:
    """An exclusive ``flock`` on a file: the kernel drops it when the process ends."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._file is not None:
            return True
        handle = self._path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()


def lock_for(database_url: str, holder: str, home: Path) -> LeaderLock:
    """The lock for this database: advisory on PostgreSQL, a file lock on SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(database_url, holder)
    database = url.database or ""
    if database and database != ":memory:":
        path = Path(database).absolute()
        return FileLock(path.with_name(path.name + ".scheduler-lock"))
    return FileLock(home / "scheduler.lock")


def holder_name() -> str:
    """How status names this process: host and pid."""
    return f"hodei-scheduler@{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Takes and keeps the lead in a thread of its own; ``leading`` says if it has it."""

    def __init__(self, lock: LeaderLock, engine: Engine, clock: Clock, holder: str) -> None:
        self._lock = lock
        self._engine = engine
        self._clock = clock
        self.holder = holder
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._since: datetime | None = None
        self._renewed = 0.0
        self._thread = threading.Thread(target=self._run, name="hodei-leadership", daemon=True)

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._leading.clear()
        self._lock.release()

    def wait_until_leading(self, timeout_s: float) -> bool:
        return self._leading.wait(timeout_s)

    def step(self) -> None:
        """One round: try to take the lead, or check and advertise it."""
        import time

        if not self.leading:
            if self._lock.try_acquire():
                self._since = self._clock.now()
                self._leading.set()
                logger.info("this scheduler (%s) leads now", self.holder)
                self._advertise(time.monotonic())
            return
        if not self._lock.held():
            self._leading.clear()
            logger.warning("this scheduler (%s) lost the lead", self.holder)
            return
        now = time.monotonic()
        if now - self._renewed >= RENEW_INTERVAL_S:
            self._advertise(now)

    def _advertise(self, monotonic_now: float) -> None:
        from hodei.store.scheduler_state import write_leader

        try:
            assert self._since is not None
            write_leader(self._engine, self.holder, self._since, self._clock.now())
            self._renewed = monotonic_now
        except HodeiError as exc:  # informational only: the lock decides, not the row
            logger.debug("could not record the scheduler lead: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the thread must outlive any one failure
                logger.exception("scheduler leadership check failed")
                self._leading.clear()
                self._lock.release()
            self._stop.wait(CHECK_INTERVAL_S)
