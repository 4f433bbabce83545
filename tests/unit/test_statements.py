"""Statement helpers render what they promise, on both dialects."""

from __future__ import annotations

import sqlalchemy as sa

from hodei.store.statements import one_of

_T = sa.table("t", sa.column("state"))


def test_one_of_writes_constants_into_the_sql_with_quotes_escaped() -> None:
    for engine in (sa.create_engine("sqlite://"), sa.create_engine("postgresql+psycopg://")):
        sql = str(sa.select(_T).where(one_of(_T.c.state, ["READY", "it's"])).compile(engine))
        assert "t.state IN ('READY', 'it''s')" in sql
        assert "POSTCOMPILE" not in sql  # nothing left to expand per execution
