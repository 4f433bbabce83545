"""A large, consistent hodei history for benchmarks/scale.py, loaded with COPY.

Every row is what hodei itself would have written: each job's events chain
PENDING -> QUEUED -> RUNNING -> its end state, its attempt names its worker, each
worker has its consumed token, so ``hodei doctor`` finds nothing in it.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import scale_rows as rows
import sqlalchemy as sa
from scale_rows import (
    ENDS,
    HISTORY,
    JOBS_PER_WORKER,
    PROVIDERS,
    History,
    Job,
    Worker,
)

CHUNK = 20_000


def load(
    conn: psycopg.Connection[Any],
    n: int,
    *,
    seed: int,
    active: int,
    log: Callable[[str], None],
) -> History:
    """Load ``n`` jobs, ``active`` of them each PENDING, QUEUED and RUNNING."""
    rng = random.Random(seed)
    end = datetime.now(UTC)
    jobs, workers = _plan(n, end.timestamp(), rng, active)
    _providers(conn, end)
    log(f"  {len(jobs)} jobs, {len(workers)} workers planned")
    _copy(conn, "workers", rows.WORKER_COLUMNS, (rows.worker_row(w) for w in workers))
    _copy(conn, "jobs", rows.JOB_COLUMNS, (rows.job_row(j) for j in jobs))
    log("  jobs and workers copied")
    # The rest references jobs and workers that exist: skip the row-by-row FK checks.
    conn.execute("SET session_replication_role = replica")
    _copy(conn, "worker_bootstrap_tokens", rows.TOKEN_COLUMNS, (rows.token_row(w) for w in workers))
    _copy(
        conn,
        "job_attempts",
        rows.ATTEMPT_COLUMNS,
        (rows.attempt_row(j) for j in jobs if j.state != "PENDING"),
    )
    _copy(conn, "domain_events", rows.EVENT_COLUMNS, rows.events(jobs, workers))
    log("  events copied")
    _copy(conn, "job_logs", rows.LOG_COLUMNS, rows.logs(jobs))
    conn.execute("SET session_replication_role = DEFAULT")
    log("  logs copied; VACUUM ANALYZE")
    conn.execute("VACUUM ANALYZE")
    # What the operators' reads see in steady state: the tally folded (status does it).
    conn.execute(
        "WITH gone AS (DELETE FROM state_counts RETURNING entity, state, delta) "
        "INSERT INTO state_counts (entity, state, delta) "
        "SELECT entity, state, sum(delta) FROM gone GROUP BY entity, state"
    )
    terminal = [j.id for j in jobs if j.state in ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED")]
    return History(jobs=n, end=end, terminal_job_ids=terminal)


def refresh_live(engine: sa.Engine) -> None:
    """Live workers heartbeat and active jobs are current, as on a running system."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE workers SET last_heartbeat = now() "
            "WHERE state IN ('READY', 'BUSY', 'REGISTERED', 'DRAINING')"
        )
        conn.exec_driver_sql(
            "UPDATE jobs SET updated_at = now() WHERE state IN ('PENDING', 'QUEUED', 'RUNNING')"
        )


# -- planning -------------------------------------------------------------------------


def _plan(
    n: int, end: float, rng: random.Random, active_each: int
) -> tuple[list[Job], list[Worker]]:
    terminal = n - 3 * active_each
    start = end - HISTORY.total_seconds()
    step = HISTORY.total_seconds() / max(terminal, 1)
    jobs: list[Job] = []
    workers: list[Worker] = []
    for k in range(terminal):
        if k % JOBS_PER_WORKER == 0:
            provider = rng.choices((0, 1, 2), (7, 2, 1))[0]
            workers.append(Worker(uuid.uuid4(), provider, "TERMINATED", start + k * step - 2, None))
        r = rng.random()
        state = next(s for s, bound, _ in ENDS if r < bound)
        job = Job(
            uuid.uuid4(),
            state,
            workers[-1].provider,
            start + (k + rng.random() * 0.5) * step,
            workers[-1],
            duration=0.05 + rng.random() * 4,
            correlation=f"wf-{k // 10}",
        )
        jobs.append(job)
        workers[-1].ended = job.created + 0.3 + job.duration + 60
    for i in range(3 * active_each):
        state = ("PENDING", "QUEUED", "RUNNING")[i % 3]
        created = end - rng.random() * 30
        worker = None
        if state == "RUNNING":
            worker = Worker(uuid.uuid4(), i % 3, "BUSY", created - 5, None)
            workers.append(worker)
        jobs.append(Job(uuid.uuid4(), state, i % 3, created, worker))
    for p in range(3):
        workers.extend(Worker(uuid.uuid4(), p, "READY", end - 120, None) for _ in range(2))
    return jobs, workers


def _providers(conn: psycopg.Connection[Any], end: datetime) -> None:
    for name, pid in PROVIDERS[1:]:
        conn.execute(
            "INSERT INTO provider_configs (id, name, provider_type, config, status, health, "
            "priority, max_workers, min_workers, allowed_regions, labels, health_check, "
            "created_at, updated_at) VALUES (%s, %s, 'local', '{}', 'ACTIVE', 'HEALTHY', 0, "
            "2000, 0, '[]', %s, '{}', %s, %s)",
            (pid, name, json.dumps({"pool": name}), end - HISTORY, end - HISTORY),
        )


# -- COPY -----------------------------------------------------------------------------


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    columns: tuple[str, ...],
    rows: Iterable[tuple[object, ...]],
) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append("\t".join(_cell(v) for v in row))
            if len(buffer) >= CHUNK:
                copy.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            copy.write("\n".join(buffer) + "\n")


def _cell(value: object) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return text
