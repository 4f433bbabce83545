"""SQL expressions that PostgreSQL and SQLite spell differently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from hodei.store.types import UTCDateTime


class seconds_after(FunctionElement[datetime]):  # noqa: N801 (SQL function style)
    """``start`` plus whole ``seconds``, as a timestamp stored like UTCDateTime.

    It lets a write compute a deadline from a column (a job's timeout) without
    reading the row first.
    """

    name = "seconds_after"
    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, start: sa.ColumnElement[Any], seconds: sa.ColumnElement[Any]) -> None:
        super().__init__(start, seconds)


def _arguments(element: seconds_after, compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(argument, **kw) for argument in element.clauses]


@compiles(seconds_after, "postgresql")
def _seconds_after_postgresql(element: seconds_after, compiler: SQLCompiler, **kw: Any) -> str:
    start, seconds = _arguments(element, compiler, **kw)
    return f"({start} + make_interval(secs => {seconds}))"


@compiles(seconds_after, "sqlite")
def _seconds_after_sqlite(element: seconds_after, compiler: SQLCompiler, **kw: Any) -> str:
    # UTCDateTime stores naive 'YYYY-MM-DD HH:MM:SS.ffffff' text on SQLite. strftime
    # keeps only milliseconds, so add the whole seconds and put back start's own
    # fraction: the result compares, as text, in time order with every other value.
    start, seconds = _arguments(element, compiler, **kw)
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {start}, '+' || ({seconds}) || ' seconds')"
        f" || substr({start}, 20))"
    )
