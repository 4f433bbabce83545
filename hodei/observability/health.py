"""Health checks for probes: can this process reach the database and the broker?

Each check reports its status, how long it took and, when it fails, one line saying
why. The database check also reports the connection pool and the schema revision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.engine import Engine

from hodei import __version__
from hodei.errors import BrokerUnavailable, SchemaMismatch, SchemaOutOfDate
from hodei.observability.metrics import pool_numbers
from hodei.settings import mask_url
from hodei.store.engine import database_errors
from hodei.store.migrate import head_revision, revision_gap
from hodei.store.schema_check import schema_differences

logger = logging.getLogger(__name__)

# How often readiness compares the live tables with the expected schema.
SCHEMA_RECHECK_S = 30.0

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    status: str
    duration_ms: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == HEALTHY

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "duration_ms": round(self.duration_ms, 2)}
        if self.error:
            out["error"] = self.error
        if self.details:
            out["details"] = self.details
        return out


def timed(check: Callable[[], dict[str, Any]]) -> CheckResult:
    """Run ``check``; any exception makes it unhealthy with that exception's first line."""
    started = time.perf_counter()
    try:
        details = check()
    except Exception as exc:  # a probe reports every failure; it never raises
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CheckResult(UNHEALTHY, _ms(started), mask_url(error))
    return CheckResult(HEALTHY, _ms(started), None, details)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class HealthChecker:
    """The database and broker checks of one ``hodei serve`` process."""

    def __init__(self, engine: Engine, app: Celery, *, broker_timeout_s: float = 3.0) -> None:
        self._engine = engine
        self._app = app
        self._broker_timeout_s = broker_timeout_s
        self._head = head_revision()
        self._schema_checked_at: float | None = None
        self._schema_differences: list[str] = []
        self._started = time.monotonic()

    def check_database(self) -> CheckResult:
        return timed(self._database)

    def check_broker(self) -> CheckResult:
        return timed(self._broker)

    def _database(self) -> dict[str, Any]:
        with database_errors(), self._engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
            revision = _revision(connection)
        if revision != self._head:
            raise SchemaOutOfDate(revision_gap(revision, self._head))
        self._check_tables()
        return {"revision": revision, "pool": pool_numbers(self._engine)}

    def _check_tables(self) -> None:
        """The tables match the expected schema (a hand-renamed column leaves the revision
        at head and breaks every command). Compared at most every SCHEMA_RECHECK_S: a
        probe is asked every few seconds, and a schema changes rarely."""
        now = time.monotonic()
        if self._schema_checked_at is None or now - self._schema_checked_at >= SCHEMA_RECHECK_S:
            self._schema_differences = schema_differences(self._engine)
            self._schema_checked_at = now
        if self._schema_differences:
            raise SchemaMismatch(
                f"schema differs from revision {self._head}: {'; '.join(self._schema_differences)}"
            )

    def _broker(self) -> dict[str, Any]:
        url = mask_url(str(self._app.conf.broker_url))
        with self._app.connection_for_read() as connection:
            try:
                # One try, no retry loop: a probe answers now and is asked again soon.
                connection.ensure_connection(max_retries=0, timeout=self._broker_timeout_s)
            except Exception as exc:
                raise BrokerUnavailable(f"unreachable at {url}: {exc}") from exc
            return {"url": url, "transport": connection.transport_cls}

    def report(self, *, full: bool) -> tuple[bool, dict[str, Any]]:
        """Run every check: (healthy?, the JSON body)."""
        checks = {"database": self.check_database(), "broker": self.check_broker()}
        failing = [f"{name}: {c.error}" for name, c in checks.items() if not c.ok]
        body: dict[str, Any] = {"status": UNHEALTHY if failing else HEALTHY}
        if failing:
            body["reason"] = "; ".join(failing)
        body["checks"] = {name: c.as_dict() for name, c in checks.items()}
        if full:
            body["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
            body["version"] = __version__
            body["uptime_s"] = round(time.monotonic() - self._started, 1)
        for name, c in checks.items():
            if not c.ok:
                logger.warning("health: %s is unhealthy: %s", name, c.error)
        return not failing, body


def _revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
