"""Per-job and per-batch writes run on psycopg's own connection, on PostgreSQL.

The statements every job makes on PostgreSQL (the provider read, the insert, the
QUEUED confirmation, the claim and the finish) are already compiled and cached by
SQLAlchemy, but its execution path still costs about as much CPU as psycopg's execute
itself: the cache key of the statement, an execution context, the result wrapper. A job
makes five such statements, in the client and in the worker, and the worker's CPU is
what bounds a worker's throughput.

:class:`DriverStatement` keeps SQLAlchemy where it is worth it, writing the SQL and
converting the values (the same bind and result processors SQLAlchemy applies), and
hands psycopg the compiled string. It runs on the connection SQLAlchemy checked out,
inside whatever transaction that connection is in, and errors come out as SQLAlchemy's
own exceptions, a lost connection invalidated as SQLAlchemy would. PostgreSQL only: on
SQLite a statement costs no round trip and the ordinary path is kept.

Writes must run inside ``SqlStore.transaction()`` or ``single_write()``, as every
repository's do: on a connection SQLAlchemy never began, psycopg's own implicit
transaction would be rolled back when the connection goes back to the pool.

:func:`insert_rows` sends a batch of rows with COPY (see :func:`copy_rows`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any]


class DriverStatement:
    """``statement`` compiled for ``dialect`` (PostgreSQL), executed on psycopg directly."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler), "a statement compiles to SQL"
        if compiled.positional:
            raise ValueError("DriverStatement needs a dialect with named parameters")
        self.sql = compiled.string
        self._constants: dict[str, Any] = {}
        self._binds: list[tuple[str, _Processor | None]] = []
        for bind, name in compiled.bind_names.items():
            if bind.expanding:
                raise ValueError(f"parameter {name!r}: IN lists are rendered per execution")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._binds.append((name, process))
            else:  # a constant of the statement, such as a state name or a JSON path
                self._constants[name] = process(bind.value) if process else bind.value
        self._columns: list[tuple[str, _Processor | None]] = [
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in getattr(statement, "selected_columns", ())
        ]

    def _params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(self._constants)
        for name, process in self._binds:
            value = params[name]
            values[name] = process(value) if process else value
        return values

    def _row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: (process(value) if process else value)
            for (name, process), value in zip(self._columns, row, strict=True)
        }

    @contextlib.contextmanager
    def _executed(self, connection: sa.Connection, params: Mapping[str, Any]) -> Iterator[Any]:
        values = self._params(params)
        with (
            _as_sqlalchemy_errors(connection, self.sql, values),
            driver_connection(connection).cursor() as cursor,
        ):
            cursor.execute(self.sql, values)
            yield cursor

    def first(self, connection: sa.Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row, by column name, or None."""
        with self._executed(connection, params) as cursor:
            row = cursor.fetchone()
        return self._row(row) if row is not None else None

    def all(self, connection: sa.Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row, by column name."""
        with self._executed(connection, params) as cursor:
            rows = cursor.fetchall()
        return [self._row(r) for r in rows]

    def execute(self, connection: sa.Connection, params: Mapping[str, Any]) -> int:
        """The statement's row count."""
        with self._executed(connection, params) as cursor:
            return int(cursor.rowcount)


def insert_rows(
    connection: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (all with the same keys): several with COPY on PostgreSQL, else one
    INSERT (executed for each row, where there are several)."""
    if len(rows) > 1 and connection.dialect.name == "postgresql":
        copy_rows(connection, table, rows)
    elif rows:
        connection.execute(_insert(table), rows[0] if len(rows) == 1 else list(rows))


@functools.cache
def _insert(table: sa.Table) -> sa.Insert:
    return table.insert()


def copy_rows(
    connection: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (all with the same keys, column names) with COPY on PostgreSQL.

    For a batch (``submit_many``'s jobs and events, a job's output lines), COPY costs a
    third of the CPU of the executemany it replaces, on both sides, and fires the
    table's statement triggers once instead of once per row. Values go through the
    columns' SQLAlchemy bind processors, as in an INSERT."""
    if not rows:
        return
    dialect = connection.dialect
    columns = list(rows[0])
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with (
        _as_sqlalchemy_errors(connection, sql, {}),
        driver_connection(connection).cursor() as cursor,
        cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row(
                [p(row[c]) if p else row[c] for c, p in zip(columns, processors, strict=True)]
            )


def driver_connection(connection: sa.Connection) -> Any:
    """psycopg's connection under SQLAlchemy's checked-out one."""
    driver = connection.connection.driver_connection
    assert driver is not None, "a checked-out connection has its driver's"
    return driver


@contextlib.contextmanager
def _as_sqlalchemy_errors(
    connection: sa.Connection, sql: str, params: Mapping[str, Any]
) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy raises them, a lost connection invalidated as
    SQLAlchemy would, so callers and ``database_errors()`` see no difference."""
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        disconnected = dialect.is_disconnect(exc, driver_connection(connection), None)
        if disconnected:
            connection.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql,
            params,
            exc,
            dbapi_error,
            connection_invalidated=disconnected,
            dialect=dialect,
        ) from exc


@functools.cache
def _compiled(statement: sa.ClauseElement, dialect: Dialect) -> DriverStatement:
    return DriverStatement(statement, dialect)


def driver_statement(
    statement: sa.ClauseElement, connection: sa.Connection
) -> DriverStatement | None:
    """The fast form of a statement built once at import, for this connection's database:
    None where the ordinary execution path is kept (every database but PostgreSQL)."""
    dialect = connection.dialect
    if dialect.name != "postgresql":
        return None
    return _compiled(statement, dialect)
