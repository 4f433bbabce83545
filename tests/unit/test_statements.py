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


def test_every_per_job_statement_is_cached_by_sqlalchemy() -> None:
    # A statement without a cache key is compiled anew on every execution: for the
    # statements every job runs, that once cost a submit a third of its time.
    from hodei.store import job_repository, run_repository, worker_repository

    per_job = {
        "create a job": job_repository._create_with_events(1),
        "queue": run_repository._QUEUE.combined,
        "start": run_repository._START.combined,
        "finish": run_repository._FINISH.combined,
        "job done": worker_repository.job_done_statement(),
    }
    uncached = [name for name, stmt in per_job.items() if stmt._generate_cache_key() is None]
    assert uncached == []
