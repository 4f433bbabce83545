"""The read-only SQL behind ``/metrics``: one snapshot of the database per scrape.

Job counts come from the ``state_counts`` tally the database's triggers keep; every
other query filters or groups on an indexed column (jobs by state, workers by provider
and state, events by type); none touches ``job_logs``. Histograms are bucketed in SQL,
so a scrape moves a few dozen rows whatever the size of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.events import Actor, EventType
from hodei.domain.states import TERMINAL_STATES, JobState
from hodei.store import tables as t
from hodei.store.worker_repository import holds_capacity

NO_PROVIDER = "none"  # the provider label of jobs no provider was found for

JOB_DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600,
)  # fmt: skip
PROVISIONING_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
COUNTED_EVENTS = (EventType.JOB_UNSCHEDULABLE, EventType.WORKER_LOST)


@dataclass(frozen=True)
class ProviderRow:
    name: str
    status: str
    health: str
    max_workers: int
    min_workers: int


@dataclass(frozen=True)
class QueueRow:
    depth: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class HistogramRow:
    """One labelled histogram: cumulative counts per upper bound, count and sum."""

    labels: tuple[str, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class Snapshot:
    """Everything ``/metrics`` shows, read in one transaction."""

    providers: list[ProviderRow]
    jobs_by_state: dict[str, int]
    queues: dict[str, QueueRow]
    job_durations: list[HistogramRow]
    workers: dict[tuple[str, str], int]
    event_counts: dict[str, int]
    provisioning: list[HistogramRow]
    server_connections: dict[str, int] | None = field(default=None)
    # Workers holding capacity per provider (live, not an unused hand-issued token).
    active_workers: dict[str, int] = field(default_factory=dict)


def read_snapshot(connection: sa.Connection) -> Snapshot:
    """Read the snapshot on ``connection`` (PostgreSQL or SQLite)."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        # A scrape must never hang on a lock or a slow plan; Prometheus retries anyway.
        connection.exec_driver_sql("SET LOCAL statement_timeout = '5s'")
    providers = connection.execute(
        sa.select(t.provider_configs).order_by(t.provider_configs.c.name)
    ).all()
    names = {row.id: row.name for row in providers}
    return Snapshot(
        providers=[
            ProviderRow(p.name, p.status, p.health, p.max_workers, p.min_workers) for p in providers
        ],
        jobs_by_state=_jobs_by_state(connection),
        queues=_queues(connection, names),
        job_durations=_job_durations(connection, names),
        workers=_workers(connection, names),
        event_counts=_event_counts(connection),
        provisioning=_provisioning(connection, names),
        server_connections=_server_connections(connection) if postgres else None,
        active_workers=_active_workers(connection, names),
    )


def _name(names: dict[Any, str], provider_id: UUID | None) -> str:
    if provider_id is None:
        return NO_PROVIDER
    return names.get(provider_id, str(provider_id))


def _jobs_by_state(connection: sa.Connection) -> dict[str, int]:
    """From the trigger-kept tally (migration 0002), not by counting every job row."""
    c = t.state_counts.c
    rows = connection.execute(
        sa.select(c.state, sa.func.sum(c.delta)).where(c.entity == "job").group_by(c.state)
    ).all()
    return {state: int(n or 0) for state, n in rows}


def _queues(connection: sa.Connection, names: dict[Any, str]) -> dict[str, QueueRow]:
    j = t.jobs.c
    rows = connection.execute(
        sa.select(j.provider_id, sa.func.count(), sa.func.min(j.queued_at))
        .where(j.state == JobState.QUEUED.value)
        .group_by(j.provider_id)
    ).all()
    return {_name(names, pid): QueueRow(int(n), oldest) for pid, n, oldest in rows}


def _histogram_columns(
    connection: sa.Connection, start: Any, end: Any, bounds: Sequence[float]
) -> list[Any]:
    """count, sum of ``end - start`` in seconds, then one cumulative ``le`` count per
    bound, all in one pass over the rows."""
    if connection.dialect.name == "postgresql":
        # Compare intervals with interval bounds: one subtraction per bucket, no
        # per-bucket conversion to seconds (a third of the cost on large histories).
        elapsed: Any = end - start
        seconds = sa.extract("epoch", end) - sa.extract("epoch", start)
        limits: list[Any] = [sa.literal(timedelta(seconds=b), sa.Interval()) for b in bounds]
    else:
        seconds = elapsed = (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
        limits = [sa.literal(float(b)) for b in bounds]
    return [
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(seconds), 0.0),
        *(sa.func.count().filter(elapsed <= limit) for limit in limits),
    ]


def _histogram_rows(
    rows: Sequence[Any], names: dict[Any, str], extra_labels: int = 0
) -> list[HistogramRow]:
    """Rows of (provider_id, *extra labels, count, sum, *cumulative counts)."""
    out = []
    for row in rows:
        labels = (_name(names, row[0]), *(str(v) for v in row[1 : 1 + extra_labels]))
        count, total, *cumulative = row[1 + extra_labels :]
        out.append(
            HistogramRow(
                labels, tuple(int(c or 0) for c in cumulative), int(count), float(total or 0.0)
            )
        )
    return out


def _job_durations(connection: sa.Connection, names: dict[Any, str]) -> list[HistogramRow]:
    j = t.jobs.c
    columns = _histogram_columns(connection, j.started_at, j.finished_at, JOB_DURATION_BUCKETS)
    rows = connection.execute(
        sa.select(j.provider_id, j.state, *columns)
        .where(
            j.state.in_([s.value for s in TERMINAL_STATES]),
            j.started_at.is_not(None),
            j.finished_at.is_not(None),
        )
        .group_by(j.provider_id, j.state)
    ).all()
    return _histogram_rows(rows, names, extra_labels=1)


def _workers(connection: sa.Connection, names: dict[Any, str]) -> dict[tuple[str, str], int]:
    w = t.workers.c
    rows = connection.execute(
        sa.select(w.provider_id, w.state, sa.func.count()).group_by(w.provider_id, w.state)
    ).all()
    return {(_name(names, pid), state): int(n) for pid, state, n in rows}


def _active_workers(connection: sa.Connection, names: dict[Any, str]) -> dict[str, int]:
    w = t.workers.c
    rows = connection.execute(
        sa.select(w.provider_id, sa.func.count()).where(holds_capacity()).group_by(w.provider_id)
    ).all()
    return {_name(names, pid): int(n) for pid, n in rows}


def _event_counts(connection: sa.Connection) -> dict[str, int]:
    e = t.domain_events.c
    rows = connection.execute(
        sa.select(e.event_type, sa.func.count())
        .where(e.event_type.in_([str(k) for k in COUNTED_EVENTS]))
        .group_by(e.event_type)
    ).all()
    return {str(k): 0 for k in COUNTED_EVENTS} | {kind: int(n) for kind, n in rows}


def _provisioning(connection: sa.Connection, names: dict[Any, str]) -> list[HistogramRow]:
    """WorkerProvisioning -> WorkerRegistered of the workers the provisioner launched
    (workers started by hand with a token would measure a person, not a provider)."""
    e = t.domain_events
    launched, registered = e.alias("launched"), e.alias("registered")
    columns = _histogram_columns(
        connection, launched.c.occurred_at, registered.c.occurred_at, PROVISIONING_BUCKETS
    )
    rows = connection.execute(
        sa.select(t.workers.c.provider_id, *columns)
        .select_from(
            launched.join(
                registered,
                sa.and_(
                    registered.c.aggregate_id == launched.c.aggregate_id,
                    registered.c.event_type == str(EventType.WORKER_REGISTERED),
                ),
            ).join(t.workers, t.workers.c.id == launched.c.aggregate_id)
        )
        .where(
            launched.c.event_type == str(EventType.WORKER_PROVISIONING),
            launched.c.actor == Actor.PROVISIONER,
        )
        .group_by(t.workers.c.provider_id)
    ).all()
    return _histogram_rows(rows, names)


def _server_connections(connection: sa.Connection) -> dict[str, int]:
    """Connections every hodei process holds on this database (application_name=hodei)."""
    rows = connection.exec_driver_sql(
        "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'hodei' GROUP BY 1"
    ).all()
    return {str(state): int(n) for state, n in rows}
