"""``hodei events follow``: a follower that is disconnected and resumed sees every event
exactly once, in id order, on PostgreSQL (LISTEN hodei_events) and SQLite (polling)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from hodei.domain.events import DomainEvent
from hodei.sdk import Client
from hodei.services.operators.events_feed import FollowOptions
from hodei.settings import Settings
from hodei.store.event_repository import SqlEventRepository
from tests.support import hodei_env, wait_for


class Follower:
    """``hodei events follow --output json`` as a subprocess, its lines collected."""

    def __init__(self, settings: Settings, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hodei", "events", "follow", "--output", "json", *args],
            env=hodei_env(settings),
            cwd=settings.home.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, object]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    @property
    def ids(self) -> list[int]:
        return [int(str(e["id"])) for e in self.events]

    def wait_until_seen(self, wanted: set[int]) -> None:
        wait_for(lambda: wanted <= set(self.ids), timeout=30, message=f"ids {sorted(wanted)}")

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=15)
        self._reader.join(timeout=5)
        return err


def write_events(client: Client, jobs: int = 3) -> set[int]:
    """Real submissions that stay PENDING (no provider has the label): two events each."""
    before = {e.id for e in client.events(limit=10_000)}
    for _ in range(jobs):
        client.submit("true", labels={"nowhere": "true"})
    return {e.id or 0 for e in client.events(limit=10_000)} - before


def all_ids(client: Client) -> list[int]:
    return [e.id or 0 for e in client.events(after_id=0, limit=10_000)]


def assert_exactly_once(client: Client, *streams: list[int]) -> None:
    seen = [i for stream in streams for i in stream]
    assert seen == sorted(seen), "ids must only increase, across the resume too"
    assert len(seen) == len(set(seen)), "no event may repeat"
    assert seen == all_ids(client), "no event may be skipped"


def run_disconnect_and_resume(client: Client, *, drop_connections: bool) -> str:
    first_batch = write_events(client)
    first = Follower(client.settings, "--from-id", "1")
    first.wait_until_seen(first_batch)
    if drop_connections:
        with client.container.engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name IN ('hodei', 'hodei-listen')"
                )
            )
    first.wait_until_seen(write_events(client))
    errors = first.stop()
    stopped_at = max(first.ids)

    missed = write_events(client)  # written while no follower runs
    second = Follower(client.settings, "--from-id", str(stopped_at + 1))
    second.wait_until_seen(missed | write_events(client))
    second.stop()
    assert_exactly_once(client, first.ids, second.ids)
    return errors


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_follower_survives_a_disconnect_and_resumes_exactly(pg_client: Client) -> None:
    errors = run_disconnect_and_resume(pg_client, drop_connections=True)
    assert "event feed:" in errors and "retrying" in errors  # it did lose its connection


def test_sqlite_follower_resumes_exactly(embedded_client: Client) -> None:
    run_disconnect_and_resume(embedded_client, drop_connections=False)


@pytest.mark.postgres
@pytest.mark.redis
def test_an_event_committed_out_of_order_is_held_not_skipped(
    pg_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hodei.services.operators.events_feed")
    start = max(all_ids(pg_client), default=0) + 1
    stream = pg_client.follow_events(from_id=start, options=FollowOptions(idle_wait_s=0.2))
    seen: list[DomainEvent] = []

    def read() -> None:
        for event in stream:
            seen.append(event)
            if event.actor == "test:marker":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    slow = pg_client.container.engine.connect()
    slow_tx = slow.begin()
    SqlEventRepository(slow).add(_event("slow"))  # takes the lower id, commits last
    with pg_client.container.store.transaction() as tx:
        tx.events.add(_event("fast"))
    wait_for(
        lambda: any("waiting for in-flight events" in r.getMessage() for r in caplog.records),
        message="the follower to hold at the gap",
    )
    assert seen == [], "it must not pass the lower id that is not committed yet"
    slow_tx.commit()
    slow.close()
    with pg_client.container.store.transaction() as tx:
        tx.events.add(_event("marker"))
    reader.join(timeout=30)
    assert [e.actor for e in seen] == ["test:slow", "test:fast", "test:marker"]
    assert [e.id for e in seen] == all_ids(pg_client)[-3:]


def _event(actor: str) -> DomainEvent:
    return DomainEvent(
        event_type="TestEvent",
        aggregate_type="test",
        aggregate_id=uuid.uuid4(),
        actor=f"test:{actor}",
        occurred_at=datetime.now(UTC),
    )
