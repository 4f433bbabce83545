"""Engines for PostgreSQL (psycopg 3, pooled) and SQLite (WAL, shared by processes)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from hodei.errors import DatabaseUnavailable, InvalidConfiguration, SchemaMismatch
from hodei.settings import mask_url
from hodei.store import outage

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SQLITE_BUSY_TIMEOUT_MS = 30_000
# The execution option that marks a connection's transactions as reads only.
READ_ONLY = "hodei_read_only"
# A pooled PostgreSQL connection idle longer than this is pinged before use.
PING_IDLE_AFTER_S = 2.0


def create_engine(
    database_url: str, *, pool_size: int = 5, idle_tx_timeout_s: float | None = None
) -> Engine:
    """An engine for ``database_url``; nothing connects until first use.

    ``idle_tx_timeout_s`` (PostgreSQL): the server ends a session left idle inside a
    transaction this long, so a frozen process cannot hold row locks forever.
    """
    try:
        url = make_url(database_url)
    except sa.exc.ArgumentError:
        raise InvalidConfiguration(
            f"HODEI_DATABASE_URL is not a database URL: {mask_url(database_url)}"
        ) from None
    if url.get_backend_name() == "sqlite":
        check_sqlite_directory(url.database, "HODEI_DATABASE_URL")
        return _sqlite_engine(url)
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url, pool_size, idle_tx_timeout_s)
    raise InvalidConfiguration(
        f"HODEI_DATABASE_URL: unsupported database {url.get_backend_name()!r};"
        " use postgresql or sqlite"
    )


def _postgres_engine(url: URL, pool_size: int, idle_tx_timeout_s: float | None) -> Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {"connect_timeout": 5, "application_name": "hodei"}
    if idle_tx_timeout_s:
        timeout_ms = int(idle_tx_timeout_s * 1000)
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={timeout_ms}"
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle: ``pool_pre_ping`` costs a
    round trip per transaction, a third of a job's when a worker is busy, while a
    connection used a moment ago is almost surely still good. One that broke anyway fails
    its statement, SQLAlchemy then discards the pool, and the caller's retry reconnects."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_AFTER_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
        except Exception as exc:
            # The pool replaces the connection and tries again.
            raise sa.exc.DisconnectionError(str(exc)) from exc


def check_sqlite_directory(database: str | None, setting: str) -> None:
    """A SQLite file's directory must exist: creating it would start a new, empty database
    beside the one the user meant (a typo, a moved home), and look like lost jobs."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = Path(database).absolute().parent
    if not directory.is_dir():
        raise InvalidConfiguration(
            f"{setting}: the directory {directory} of the SQLite file does not exist"
            " (create it, or fix the URL)"
        )


def _sqlite_engine(url: URL) -> Engine:
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below start transactions, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A transaction that writes takes the write lock up front: a deferred one that
        # later writes can fail with "database is locked" without waiting for the busy
        # timeout. One that only reads (WAL) needs no lock: it neither waits for the
        # writer nor holds it up.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def read_only(engine: Engine) -> Iterator[sa.Connection]:
    """A connection for one transaction that only reads, rolled back at the end. On
    SQLite it takes no write lock (see ``_on_begin``)."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        try:
            yield connection
        finally:
            connection.rollback()


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn driver connection errors into :class:`DatabaseUnavailable`."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with database_errors():
            return func(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Translate "cannot reach the database" errors, and those of a schema that is not
    the expected one, at the adapter edge."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        if is_schema_error(exc):
            raise SchemaMismatch(
                f"the database schema does not match this hodei ({_first_line(exc.orig)}):"
                " run `hodei db current --check` to see the differences"
            ) from None
        if isinstance(exc, sa.exc.ProgrammingError):
            raise
        raise _unavailable(exc) from exc
    except sa.exc.InterfaceError as exc:
        raise _unavailable(exc) from exc
    outage.DATABASE.succeeded()


def _unavailable(exc: sa.exc.DBAPIError) -> DatabaseUnavailable:
    # The outage is logged once per process, here; callers log theirs at debug.
    outage.DATABASE.failed(_first_line(exc.orig))
    return DatabaseUnavailable(f"database unavailable: {_first_line(exc.orig)}")


def is_schema_error(exc: sa.exc.DBAPIError) -> bool:
    """True for a driver error that means a table or column is not where hodei expects."""
    text = str(exc.orig)
    if "no such table" in text or "no such column" in text or "has no column named" in text:
        return True  # SQLite
    # PostgreSQL: undefined_table, undefined_column.
    return getattr(exc.orig, "sqlstate", None) in ("42P01", "42703")


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__
