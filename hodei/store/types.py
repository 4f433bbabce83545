"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on both dialects.

    SQLite has no time zones: values are stored as naive UTC and given back aware, so
    comparisons in SQL (``expires_at > :now``) are correct on both.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONDocument(sa.TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL: ``sa.JSON().with_variant(JSONB(), ...)``
    but for the import. Naming JSONB in the table definitions imported SQLAlchemy's
    PostgreSQL dialect (and its asyncpg driver module), 30 ms of every SQLite command;
    here it is picked when a PostgreSQL engine, which has imported it, asks."""

    impl = sa.JSON
    cache_ok = True
    # As sa.JSON's default (none_as_null=False): Python None is the JSON ``null``.
    should_evaluate_none = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON, stored as JSONB on PostgreSQL."""
    return JSONDocument()


def big_id() -> sa.types.TypeEngine[int]:
    """An increasing 64-bit id (plain INTEGER on SQLite, where only that autoincrements)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
