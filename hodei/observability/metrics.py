"""Prometheus metrics as a custom collector: each scrape reads the database.

Nothing is counted in this process's memory, so a restart of ``hodei serve`` (or of any
worker) changes no number. Metric names follow the provider troubleshooting guide
(``hodei_provider_health_status``, ``hodei_provider_active_workers``, ...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from sqlalchemy.engine import Engine

from hodei import __version__
from hodei.domain.states import JobState, ProviderHealth, WorkerState
from hodei.errors import HodeiError
from hodei.observability.queries import (
    JOB_DURATION_BUCKETS,
    PROVISIONING_BUCKETS,
    HistogramRow,
    Snapshot,
    read_snapshot,
)
from hodei.store.engine import database_errors

logger = logging.getLogger(__name__)

Now = Callable[[], datetime]


def pool_numbers(engine: Engine) -> dict[str, int]:
    """This process's connection pool: size, in use, idle, overflow and the ceiling."""
    pool: Any = engine.pool
    if not hasattr(pool, "checkedout"):
        return {}
    size = int(pool.size())
    max_overflow = int(getattr(pool, "_max_overflow", 0))
    return {
        "size": size,
        "in_use": int(pool.checkedout()),
        "idle": int(pool.checkedin()),
        "overflow": max(int(pool.overflow()), 0),
        "max": size + max(max_overflow, 0),
    }


class HodeiCollector:
    """Collects hodei's metrics from the database on every scrape."""

    def __init__(self, engine: Engine, now: Now = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._now = now

    def describe(self) -> Iterable[Metric]:
        # Registering must not touch the database: declare nothing up front.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            with database_errors(), self._engine.connect() as connection, connection.begin():
                snapshot = read_snapshot(connection)
        except (HodeiError, sa.exc.SQLAlchemyError) as exc:
            logger.warning("metrics: cannot read the database: %s", exc)
            snapshot = None
        up = 0 if snapshot is None else 1
        yield _gauge("hodei_database_up", "1 when this scrape could read the database.", up)
        if snapshot is not None:
            yield from snapshot_metrics(snapshot, self._now())
        yield from _pool_metrics(self._engine)
        info = GaugeMetricFamily("hodei_info", "hodei's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _gauge(
            "hodei_scrape_duration_seconds",
            "How long reading the database for this scrape took.",
            time.perf_counter() - started,
        )


def build_registry(engine: Engine, now: Now | None = None) -> CollectorRegistry:
    """A registry holding only hodei's collector (no process metrics of ``serve``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HodeiCollector(engine, now) if now else HodeiCollector(engine))
    return registry


def snapshot_metrics(snapshot: Snapshot, now: datetime) -> Iterator[Metric]:
    """Every metric family a database snapshot yields."""
    yield from _job_metrics(snapshot, now)
    yield from _worker_metrics(snapshot)
    yield from _provider_metrics(snapshot)
    yield _counter(
        "hodei_provider_selection_failures",
        "Jobs no provider could take at submission (JobUnschedulable events).",
        snapshot.event_counts.get("JobUnschedulable", 0),
    )
    yield _counter(
        "hodei_workers_reaped",
        "Workers the reaper declared lost (WorkerLost events).",
        snapshot.event_counts.get("WorkerLost", 0),
    )
    if snapshot.server_connections is not None:
        server = GaugeMetricFamily(
            "hodei_db_server_connections",
            "Connections all hodei processes hold on the database, by state (pg_stat_activity).",
            labels=["state"],
        )
        for state, n in sorted(snapshot.server_connections.items()):
            server.add_metric([state], n)
        yield server


def _job_metrics(snapshot: Snapshot, now: datetime) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("hodei_jobs", "Jobs in the database, by state.", labels=["state"])
    for state in JobState:
        jobs.add_metric([state.value], snapshot.jobs_by_state.get(state.value, 0))
    yield jobs
    depth = GaugeMetricFamily(
        "hodei_queue_depth", "Jobs QUEUED on a provider's queue.", labels=["provider"]
    )
    age = GaugeMetricFamily(
        "hodei_queue_oldest_age_seconds",
        "Age of the oldest QUEUED job of a provider (0 when none).",
        labels=["provider"],
    )
    names = {p.name for p in snapshot.providers} | set(snapshot.queues)
    for name in sorted(names):
        row = snapshot.queues.get(name)
        depth.add_metric([name], row.depth if row else 0)
        oldest = row.oldest_queued_at if row else None
        age.add_metric([name], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    yield depth
    yield age
    yield _histogram(
        "hodei_job_duration_seconds",
        "Run time of finished jobs (started_at to finished_at), by provider and final state.",
        ["provider", "state"],
        JOB_DURATION_BUCKETS,
        snapshot.job_durations,
    )


def _worker_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    workers = GaugeMetricFamily(
        "hodei_workers", "Workers by provider and state.", labels=["provider", "state"]
    )
    names = {p.name for p in snapshot.providers} | {name for name, _ in snapshot.workers}
    for name in sorted(names):
        for state in WorkerState:
            workers.add_metric([name, state.value], snapshot.workers.get((name, state.value), 0))
    yield workers
    yield _histogram(
        "hodei_worker_provisioning_seconds",
        "Provisioning latency: WorkerProvisioning to WorkerRegistered, by provider.",
        ["provider"],
        PROVISIONING_BUCKETS,
        snapshot.provisioning,
    )


def _provider_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    health = GaugeMetricFamily(
        "hodei_provider_health_status",
        "1 for the provider's current health, 0 for the others.",
        labels=["provider", "status"],
    )
    active = GaugeMetricFamily(
        "hodei_provider_active_workers",
        "Workers holding a slot of a provider (an unused hand-issued token holds none).",
        labels=["provider"],
    )
    maximum = GaugeMetricFamily(
        "hodei_provider_max_workers", "A provider's max_workers.", labels=["provider"]
    )
    for p in snapshot.providers:
        for status in ProviderHealth:
            health.add_metric([p.name, status.value.lower()], 1 if p.health == status.value else 0)
        active.add_metric([p.name], snapshot.active_workers.get(p.name, 0))
        maximum.add_metric([p.name], p.max_workers)
    yield health
    yield active
    yield maximum


def _pool_metrics(engine: Engine) -> Iterator[Metric]:
    numbers = pool_numbers(engine)
    if not numbers:
        return
    pool = GaugeMetricFamily(
        "hodei_db_pool_connections",
        "This process's database pool: connections in use and idle.",
        labels=["state"],
    )
    pool.add_metric(["in_use"], numbers["in_use"])
    pool.add_metric(["idle"], numbers["idle"])
    yield pool
    yield _gauge(
        "hodei_db_pool_max_connections", "The pool's ceiling (size plus overflow).", numbers["max"]
    )


def _histogram(
    name: str,
    documentation: str,
    labels: list[str],
    bounds: Sequence[float],
    rows: Sequence[HistogramRow],
) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for row in rows:
        buckets = [(_le(b), float(c)) for b, c in zip(bounds, row.cumulative, strict=True)]
        buckets.append(("+Inf", float(row.count)))
        family.add_metric(list(row.labels), buckets, row.total)
    return family


def _le(bound: float) -> str:
    # Prometheus spells bucket bounds as floats ("1.0", "2.5").
    return repr(float(bound))


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)
