"""kombu's SQLAlchemy transport, tuned for a SQLite file shared by several processes.

The stock transport passes every transport option to ``create_engine``, so it cannot
take ``polling_interval``; SQLite needs a busy timeout and WAL to be shared; and the
stock transport ignores a message's priority, which this one honours on SQLite.
"""

from __future__ import annotations

import json
import threading
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.transport.sqlalchemy.models import Message as MessageBase
from kombu.transport.sqlalchemy.models import Queue as QueueBase
from kombu.utils.encoding import bytes_to_str
from kombu.utils.objects import cached_property
from sqlalchemy import create_engine, event, text

_NOT_ENGINE_OPTIONS = ("polling_interval",)

# Where kombu's virtual transport keeps a message's priority (0..9, from
# ``prepare_message``) in the JSON payload it stores. Written the same in the index and
# in the query: SQLite uses an index on an expression only for that very expression.
_PRIORITY = "json_extract(payload, '$.properties.priority')"

_INDEXED: set[str] = set()  # engines (by URL) whose message table has the priority index
_INDEX_LOCK = threading.Lock()


class Channel(kombu_sqla.Channel):
    # kombu's models, less their MySQL table options (``mysql_engine``) on other
    # databases: SQLAlchemy imports a dialect to check options named for it, and
    # MySQL's was 11 ms of every SQLite `job run`. Those options do nothing elsewhere.
    def __init__(self, connection: Any, **kwargs: Any) -> None:
        # Set before kombu's __init__, which defines the models first.
        self._mysql = str(connection.client.hostname).startswith("mysql")
        super().__init__(connection, **kwargs)

    @cached_property
    def queue_cls(self) -> Any:
        return self._model("Queue", QueueBase, self.queue_tablename)

    @cached_property
    def message_cls(self) -> Any:
        return self._model("Message", MessageBase, self.message_tablename)

    def _model(self, name: str, base: Any, tablename: str) -> Any:
        namespace: dict[str, Any] = {"__tablename__": tablename}
        if not self._mysql:
            namespace["__table_args__"] = _without_mysql_options(base.__table_args__)
        return self._declarative_cls(name, base, namespace)

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {
            k: v
            for k, v in conninfo.transport_options.items()
            if k not in _NOT_ENGINE_OPTIONS
            and k
            not in (
                "queue_tablename",
                "message_tablename",
                "callback",
                "errback",
                "max_retries",
                "interval_start",
                "interval_step",
                "interval_max",
                "retry_errors",
            )
        }
        engine = create_engine(conninfo.hostname, **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def _open(self) -> Any:
        engine, session_factory = super()._open()
        if engine.dialect.name == "sqlite" and str(engine.url) not in _INDEXED:
            with _INDEX_LOCK:
                if str(engine.url) not in _INDEXED:
                    _create_priority_index(engine, self.message_tablename)
                    _INDEXED.add(str(engine.url))
        return engine, session_factory

    def _get(self, queue: str, timeout: Any = None) -> Any:
        """The visible message of ``queue`` with the highest priority, the oldest of
        those first. kombu's own ``_get`` takes the oldest (sent_at, id): sent_at is
        only set when a row is taken, so for visible rows that order is the id's.

        BEGIN IMMEDIATE takes SQLite's write lock before the SELECT, as kombu does, so
        two consumers never take the same row."""
        if self.session.bind.name != "sqlite":
            return super()._get(queue)
        obj = self._get_or_create(queue)
        message = self.message_cls
        self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            # `visible = 1` as a literal, not a bound parameter: the partial index's
            # WHERE must appear in the query for SQLite to use it.
            row = (
                self.session.query(message)
                .filter(message.queue_id == obj.id)
                .filter(text("visible = 1"))
                .order_by(text(f"{_PRIORITY} DESC"), message.id)
                .limit(1)
                .first()
            )
            if row is None:
                raise Empty()
            row.visible = False
            return json.loads(bytes_to_str(row.payload))
        finally:
            self.session.commit()


def _without_mysql_options(args: Any) -> Any:
    """``__table_args__`` (a dict, or a tuple ending with one) without ``mysql_*``."""
    if isinstance(args, dict):
        return {k: v for k, v in args.items() if not k.startswith("mysql_")}
    *positional, options = args
    return (*positional, _without_mysql_options(options))


def _create_priority_index(engine: Any, table: str) -> None:
    """An index that hands ``_get`` its next message without reading the queue's other
    rows: only visible rows (delivered ones stay in the table, invisible), by queue,
    priority (highest first), then id. IF NOT EXISTS: broker files made before it get it
    on their first open."""
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_{table}_priority"
                f" ON {table} (queue_id, {_PRIORITY} DESC, id) WHERE visible = 1"
            )
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Transport(kombu_sqla.Transport):
    Channel = Channel
