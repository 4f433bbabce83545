"""Statements built once and reused with bound parameters.

Per-job paths (a retry, a late confirmation, worker updates) run these again and again;
building a SQLAlchemy statement (and its cache key) costs more than executing one that
is already compiled and cached.
An UPDATE built here has no VALUES: the columns to set are the parameter names, and the
WHERE clause binds ``w_``-prefixed names so the two never collide.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.store.tables import domain_events

# The columns a new event is inserted with: its id comes from a sequence.
NEW_EVENT_COLUMNS = tuple(c.name for c in domain_events.c if c.name != "id")


@functools.cache
def conditional_update(
    table: sa.Table, states: tuple[str, ...], keys: tuple[str, ...] = ()
) -> sa.Update:
    """``UPDATE table SET <params> WHERE id = :w_id AND state IN states AND key = :w_key...``"""
    stmt = table.update().where(table.c.id == sa.bindparam("w_id"), one_of(table.c.state, states))
    for key in keys:
        stmt = stmt.where(table.c[key] == sa.bindparam(f"w_{key}"))
    return stmt


def ids_between(
    connection: sa.Connection, table: sa.Table, low: UUID, high: UUID, *, limit: int
) -> list[UUID]:
    """The ids of ``table`` from ``low`` to ``high``, in order (an id prefix as a range
    on its primary key: `job show 1a2b`, `worker show 1a2b`)."""
    query = (
        sa.select(table.c.id).where(table.c.id.between(low, high)).order_by(table.c.id).limit(limit)
    )
    return list(connection.execute(query).scalars())


@functools.cache
def select_by(table: sa.Table, *keys: str) -> sa.Select[tuple[object, ...]]:
    """``SELECT * FROM table WHERE key = :w_key...``"""
    return sa.select(table).where(*(table.c[key] == sa.bindparam(f"w_{key}") for key in keys))


@functools.cache
def update_by(table: sa.Table, *keys: str) -> sa.Update:
    """``UPDATE table SET <params> WHERE key = :w_key...``"""
    return table.update().where(*(table.c[key] == sa.bindparam(f"w_{key}") for key in keys))


@functools.cache
def lock_by_id(table: sa.Table) -> sa.Select[tuple[object]]:
    """``SELECT id FROM table WHERE id = :w_id FOR UPDATE``: the row stays locked until
    the transaction ends. SQLite has no row locks and SQLAlchemy leaves FOR UPDATE out
    there; its writers are serialised anyway, each transaction starting with BEGIN
    IMMEDIATE (store/engine.py)."""
    return sa.select(table.c.id).where(table.c.id == sa.bindparam("w_id")).with_for_update()


def one_of(column: sa.ColumnElement[Any], values: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values written into the statement: an IN of bound
    values is re-rendered on every execution (SQLAlchemy's "expanding" parameters),
    which costs a per-job statement a noticeable share of its time. For constants only,
    such as state names."""
    quoted: list[sa.ColumnElement[Any]] = [
        sa.literal_column("'" + value.replace("'", "''") + "'") for value in values
    ]
    return column.in_(quoted)


def bound_columns(
    table: sa.Table, columns: Iterable[str], prefix: str
) -> dict[str, sa.BindParameter[Any]]:
    """``{column: :<prefix><column>}``, each parameter typed as its column. Prefixes let
    several rows' values (a job, its attempt, its event) share one parameter dictionary
    in one statement; :func:`prefixed` builds that dictionary."""
    return {c: sa.bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns}


def prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A row's values as the parameters of :func:`bound_columns` with ``prefix``."""
    return {f"{prefix}{name}": value for name, value in values.items()}


def where_params(**values: object) -> dict[str, object]:
    """Parameters for the WHERE clause of a statement built here."""
    return {f"w_{key}": value for key, value in values.items()}
