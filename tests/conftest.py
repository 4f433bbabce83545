"""Shared fixtures: real PostgreSQL (a migrated template, a fresh database per test),
Redis (a flushed database per test), SQLite homes, and cleanup of worker processes."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hodei.sdk import Client
from hodei.settings import Settings
from tests.api_server import ApiServer, running_server
from tests.services import POSTGRES_URL, RABBITMQ_URL, REDIS_URL, require
from tests.support import alive, fast_settings, kill_tree, pid_of

# Per session, so several test sessions can share one server.
TEMPLATE_DB = f"hodei_test_template_{os.getpid()}"


def _admin_engine() -> sa.Engine:
    url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _db_url(name: str) -> str:
    url = sa.engine.make_url(POSTGRES_URL).set(database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Migrate a template database once per session (procrastinate's approach)."""
    require("PostgreSQL", POSTGRES_URL, 5432)
    from hodei.store.engine import create_engine
    from hodei.store.migrate import upgrade

    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {TEMPLATE_DB}")
    engine = create_engine(_db_url(TEMPLATE_DB))
    upgrade(engine)
    engine.dispose()
    yield TEMPLATE_DB
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = f"hodei_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    yield _db_url(name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(scope="session")
def redis_db_number() -> Iterator[int]:
    """A Redis database number claimed for this session (db 0 holds the claims)."""
    require("Redis", REDIS_URL, 6379)
    import redis

    claims = redis.Redis.from_url(REDIS_URL.rstrip("/") + "/0")
    for number in range(1, 16):
        if claims.set(f"hodei-test-db:{number}", os.getpid(), nx=True, ex=3600):
            break
    else:
        pytest.fail("all Redis databases 1..15 are claimed by other test sessions")
    yield number
    claims.delete(f"hodei-test-db:{number}")


@pytest.fixture
def redis_url(redis_db_number: int) -> str:
    """A flushed Redis database for this test."""
    import redis

    url = f"{REDIS_URL.rstrip('/')}/{redis_db_number}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def rabbitmq_url() -> str:
    require("RabbitMQ", RABBITMQ_URL, 5672)
    return RABBITMQ_URL


@pytest.fixture
def pg_settings(tmp_path: Path, postgres_url: str, redis_url: str) -> Settings:
    """PostgreSQL + Redis, with short intervals."""
    return fast_settings(tmp_path / ".hodei", database_url=postgres_url, broker_url=redis_url)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """The embedded default (SQLite database and broker) in a temporary HODEI_HOME."""
    return fast_settings(tmp_path / ".hodei")


@pytest.fixture
def pg_client(pg_settings: Settings) -> Iterator[Client]:
    client = Client.from_env(**_as_overrides(pg_settings))
    yield client
    stop_workers(client)
    client.close()


@pytest.fixture
def embedded_client(embedded_settings: Settings) -> Iterator[Client]:
    client = Client.from_env(**_as_overrides(embedded_settings))
    yield client
    stop_workers(client)
    client.close()


def _as_overrides(settings: Settings) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def stop_workers(client: Client) -> None:
    """SIGTERM every worker process the test started, then SIGKILL what remains."""
    try:
        with client.container.store.transaction() as tx:
            pids = [p for w in tx.workers.search(limit=1000) if (p := pid_of(w.infra_ref))]
    except Exception:
        return
    for pid in pids:
        kill_tree(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        kill_tree(pid, signal.SIGKILL)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """The same test on the embedded SQLite default and on PostgreSQL + Redis."""
    name = "embedded_client" if request.param == "sqlite" else "pg_client"
    yield request.getfixturevalue(name)


@pytest.fixture
def api_server(pg_settings: Settings) -> Iterator[ApiServer]:
    """A real ``hodei server`` process on PostgreSQL + Redis, with a token per role."""
    with running_server(pg_settings) as server:
        yield server


@pytest.fixture(params=["local", "api"])
def lifecycle_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """The SDK's local backend, and the same calls over HTTP with a submitter token."""
    if request.param == "local":
        yield request.getfixturevalue("pg_client")
        return
    server: ApiServer = request.getfixturevalue("api_server")
    client = server.client("submitter")
    yield client
    client.close()
