"""The event log as a feed for followers: id-cursor reads, woken by PostgreSQL's
``LISTEN hodei_events`` (psycopg 3) or, on SQLite, by polling.

The NOTIFY payload (the highest new id) is only a wake-up hint; followers always read
by id cursor, so a lost notification or a reconnect costs latency, never events.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hodei.domain.events import DomainEvent
from hodei.errors import DatabaseUnavailable
from hodei.store.engine import database_errors
from hodei.store.mapping import event_from_row
from hodei.store.tables import domain_events as events

if TYPE_CHECKING:
    # psycopg is imported where a connection is made: only PostgreSQL LISTENs, and its
    # import (a twentieth of a second) would be paid by every SQLite `job run` too.
    import psycopg
    from psycopg import Notify

logger = logging.getLogger(__name__)

CHANNEL = "hodei_events"


class PgNotifications:
    """A dedicated autocommit psycopg connection listening on ``channels``.

    It reconnects lazily: after an error :meth:`wait` raises DatabaseUnavailable once,
    and the next call connects and LISTENs again.
    """

    def __init__(self, conninfo: str, channels: Sequence[str] = (CHANNEL,)) -> None:
        self._conninfo = conninfo
        self._channels = tuple(channels)
        self._names = ", ".join(self._channels)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._listening: tuple[str, ...] = ()

    def listen(self, channels: Sequence[str] | None = None) -> None:
        """Connect and LISTEN now (before the first read, so no commit is missed); with
        ``channels``, to those from now on (after a reconnect too)."""
        if channels is not None:
            self._channels = tuple(channels)
            self._names = ", ".join(self._channels)
        if self._conn is not None and self._listening == self._channels:
            return
        import psycopg

        try:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="hodei-listen",
                )
                self._listening = ()
            for channel in self._channels:
                if channel not in self._listening:
                    self._conn.execute(f"LISTEN {channel}")
            self._listening = self._channels
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailable(f"cannot LISTEN {self._names}: {_first_line(exc)}") from exc

    def wait(self, timeout_s: float) -> list[Notify]:
        """The notifications of the next burst, or none after ``timeout_s``."""
        self.listen()
        assert self._conn is not None
        import psycopg

        try:
            got = list(self._conn.notifies(timeout=timeout_s, stop_after=1))
            if got:  # drain a burst: one read covers it
                got.extend(self._conn.notifies(timeout=0))
            return got
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailable(f"lost LISTEN {self._names}: {_first_line(exc)}") from exc

    def unlisten(self) -> None:
        """Stop listening but keep the connection, and drop what was already delivered."""
        if self._conn is None:
            return
        import psycopg

        try:
            self._conn.execute("UNLISTEN *")
            self._listening = ()
            for _ in self._conn.notifies(timeout=0):
                pass
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            import psycopg

            with contextlib.suppress(psycopg.Error):
                conn.close()


class SqlEventFeed:
    """:class:`hodei.services.ports.reads.EventFeed` on an engine."""

    def __init__(self, engine: Engine, *, poll_s: float = 0.5) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._poll_s = poll_s
        self._notifications = PgNotifications(conninfo(engine)) if self._postgres else None
        # PostgreSQL commits concurrent transactions in any order, so a gap in ids may be
        # an event still in flight; SQLite serialises writers, so a gap there is final.
        self.settle_delay_s = 0.2 if self._postgres else 0.0

    def last_id(self) -> int:
        with database_errors(), self.engine.connect() as c:
            return int(
                c.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one()
            )

    def read_after(self, after_id: int, limit: int) -> list[DomainEvent]:
        stmt = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        with database_errors(), self.engine.connect() as c:
            return [event_from_row(r) for r in c.execute(stmt).mappings()]

    def horizon(self) -> int:
        if not self._postgres:
            return 0
        return self._scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")

    def settled(self, horizon: int) -> bool:
        if not self._postgres:
            return True
        # Every transaction with an xid below ``horizon`` has committed or rolled back.
        return (
            self._scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint") >= horizon
        )

    def wait(self, timeout_s: float) -> None:
        if self._notifications is None:
            time.sleep(min(timeout_s, self._poll_s))
            return
        self._notifications.wait(timeout_s)

    def listen(self) -> None:
        if self._notifications is not None:
            self._notifications.listen()

    def close(self) -> None:
        if self._notifications is not None:
            self._notifications.close()

    def _scalar(self, sql: str) -> int:
        with database_errors(), self.engine.connect() as c:
            return int(c.exec_driver_sql(sql).scalar_one())


def conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
