"""`hodei serve` health probes: ready turns 503 with a reason when PostgreSQL or Redis is
cut off (through a proxy this test controls), and 200 again when it is back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hodei.settings import Settings
from tests.integration.test_observability_metrics import http_get, serving
from tests.support import TcpProxy, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _via(url: str, port: int) -> str:
    return sa.engine.make_url(url).set(port=port).render_as_string(hide_password=False)


@pytest.fixture
def proxies() -> Iterator[tuple[TcpProxy, TcpProxy]]:
    database, broker = TcpProxy(5432), TcpProxy(6379)
    database.start()
    broker.start()
    yield database, broker
    database.stop()
    broker.stop()


def _ready(base: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(base + "/health/ready")
    return status, json.loads(body)


def _redis_via(url: str, port: int) -> str:
    # redis://127.0.0.1:6379/3 -> the same database through the proxy
    return url.replace(":6379", f":{port}", 1)


def test_ready_follows_the_database_and_the_broker(
    pg_settings: Settings, proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    database, broker = proxies
    env = {
        "HODEI_DATABASE_URL": _via(pg_settings.database_url, database.port),
        "HODEI_BROKER_URL": _redis_via(pg_settings.broker_url, broker.port),
    }
    with serving(pg_settings, **env) as base:
        status, body = _ready(base)
        assert status == 200, body
        assert body["status"] == "healthy"
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["database"]["details"]["pool"]["max"] > 0
        assert checks["database"]["duration_ms"] >= 0
        assert checks["broker"]["status"] == "healthy"

        full_status, full = http_get(base + "/health")
        assert full_status == 200
        assert {"version", "uptime_s", "timestamp"} <= json.loads(full).keys()

        database.stop()
        status, body = wait_for(
            lambda: (r := _ready(base))[0] == 503 and r, message="ready to report 503"
        )
        assert body["status"] == "unhealthy"
        assert str(body["reason"]).startswith("database: ")
        assert body["checks"]["broker"]["status"] == "healthy"  # type: ignore[index]
        assert http_get(base + "/health/live")[0] == 200  # alive while its database is down
        assert http_get(base + "/metrics")[0] == 200  # with hodei_database_up 0

        database.start()
        wait_for(lambda: _ready(base)[0] == 200, message="ready to recover after PostgreSQL")

        broker.stop()
        status, body = wait_for(
            lambda: (r := _ready(base))[0] == 503 and r, message="ready to report the broker"
        )
        assert str(body["reason"]).startswith("broker: ")
        assert "unreachable" in str(body["reason"])
        assert body["checks"]["database"]["status"] == "healthy"  # type: ignore[index]

        broker.start()
        wait_for(lambda: _ready(base)[0] == 200, message="ready to recover after Redis")
