"""Compare the live schema with the one this hodei expects (``hodei/store/tables.py``).

The migration table can say "head" while a column was renamed or dropped by hand; then
every command fails on SQL. alembic's autogenerate comparison, the one
tests/integration/test_schema.py runs, names each difference instead.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from hodei.store.engine import database_errors
from hodei.store.tables import metadata

# Objects that are there but not expected do not stop hodei: an operator's own index or
# table, kombu's tables when the broker shares the database.
_IGNORED = {"remove_table", "remove_index", "remove_constraint", "remove_fk"}


def schema_differences(engine: Engine) -> list[str]:
    """Each way the live schema differs from the expected one, as a short phrase."""
    with database_errors(), engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    out: list[str] = []
    for diff in diffs:
        # A column's changes come as a list of tuples; everything else as one tuple.
        for item in diff if isinstance(diff, list) else [diff]:
            text = _describe(item)
            if text:
                out.append(text)
    return out


def _describe(item: tuple[Any, ...]) -> str | None:
    kind = item[0]
    if kind in _IGNORED:
        return None
    if kind == "add_table":
        return f"table {item[1].name} is missing"
    if kind == "add_column":
        return f"column {item[2]}.{item[3].name} is missing"
    if kind == "remove_column":
        return f"column {item[2]}.{item[3].name} is not expected"
    if kind == "modify_type":
        return f"column {item[2]}.{item[3]} is {item[5]}, expected {item[6]}"
    if kind == "modify_nullable":
        expected = "NULL" if item[6] else "NOT NULL"
        return f"column {item[2]}.{item[3]} should be {expected}"
    if kind == "add_index":
        return f"index {item[1].name} is missing"
    if kind in ("add_constraint", "add_fk"):
        return f"constraint {getattr(item[1], 'name', None) or item[1]} is missing"
    if kind == "modify_default":
        return None  # server defaults are compared loosely by alembic; not a breakage
    return f"{kind.replace('_', ' ')}: {item[1:]}"
