"""Bootstrap tokens: single use, hashed at rest, rejections say why."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from hodei.errors import TokenRejected
from hodei.sdk import Client
from hodei.services.fleet.bootstrap_tokens import consume_token
from hodei.services.fleet.workers import create_worker_token
from hodei.settings import Settings
from tests.support import run_cli

pytestmark = [pytest.mark.postgres]


def _token(client: Client, ttl_s: float = 60) -> str:
    c = client.container
    return create_worker_token(
        c.store, c.clock, provider_name="local", ttl_s=ttl_s, actor="sdk:test"
    ).secret


def _rejections(client: Client) -> list[str]:
    with client.container.store.transaction() as tx:
        from hodei.services.ports.store import EventQuery

        events = tx.events.search(EventQuery(event_types=["TokenRejected"]))
    return [e.payload["reason"] for e in events]


# A token registering once, and expired or unknown ones rejected with the reason, are
# use-case rules: tests/unit/test_use_cases.py checks them on hodei.testing's fakes.


def test_ten_threads_racing_for_one_token_exactly_one_wins(pg_client: Client) -> None:
    c = pg_client.container
    secret = _token(pg_client)
    results: list[str] = []
    barrier = threading.Barrier(10)

    def race() -> None:
        barrier.wait()
        try:
            consume_token(c.store, c.clock, secret)
            results.append("won")
        except TokenRejected as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=race) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["consumed"] * 9 + ["won"]


def test_the_stored_table_holds_no_secret(pg_client: Client) -> None:
    secret = _token(pg_client)
    with pg_client.container.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM worker_bootstrap_tokens")).all()
        dump = " ".join(str(v) for row in rows for v in row)
        events = conn.execute(sa.text("SELECT payload::text FROM domain_events")).all()
    assert secret not in dump
    assert secret.removeprefix("hodei_") not in dump
    assert all(secret not in str(e) for e in events)
    import hashlib

    assert hashlib.sha256(secret.encode()).hexdigest() in dump


def test_a_worker_with_a_bad_token_refuses_to_start_and_says_why(pg_settings: Settings) -> None:
    result = run_cli(pg_settings, "worker", "start", "--token", "hodei_bogus", timeout=60)
    assert result.returncode == 7
    assert result.stderr.strip().splitlines()[-1] == (
        "hodei: error: bootstrap token rejected: unknown token (it was never issued, or was purged)"
    )
    assert "Traceback" not in result.stderr


def test_token_create_prints_the_secret_once(pg_settings: Settings) -> None:
    result = run_cli(pg_settings, "worker", "token", "create", "--ttl", "60")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("hodei_") and len(secret) > 30
