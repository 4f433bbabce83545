"""A large, consistent hodei history for benchmarks/scale.py, loaded with COPY.

Every row is what hodei itself would have written: each job's events chain
PENDING -> QUEUED -> RUNNING -> its end state, its attempt names its worker, each
worker has its consumed token, so ``hodei doctor`` finds nothing in it.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa

HISTORY = timedelta(days=30)
JOBS_PER_WORKER = 6
LOG_LINES = 20
CHUNK = 20_000
LOCAL_PROVIDER = uuid.UUID("00000000-0000-4000-8000-000000000001")
PROVIDERS = [("local", LOCAL_PROVIDER), ("batch", uuid.uuid4()), ("gpu", uuid.uuid4())]
ENDS = [
    ("SUCCEEDED", 0.90, "JobSucceeded"),
    ("FAILED", 0.98, "JobFailed"),
    ("TIMED_OUT", 0.99, "JobTimedOut"),
    ("CANCELLED", 1.0, "JobCancelled"),
]


@dataclass
class History:
    jobs: int
    end: datetime
    terminal_job_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Job:
    id: uuid.UUID
    state: str
    provider: int
    created: float
    worker: Worker | None = None
    duration: float = 1.0
    correlation: str | None = None


@dataclass
class Worker:
    id: uuid.UUID
    provider: int
    state: str
    created: float
    ended: float | None
    token: uuid.UUID = field(default_factory=uuid.uuid4)


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


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
    _copy(conn, "workers", WORKER_COLUMNS, (_worker_row(w) for w in workers))
    _copy(conn, "jobs", JOB_COLUMNS, (_job_row(j) for j in jobs))
    log("  jobs and workers copied")
    # The rest references jobs and workers that exist: skip the row-by-row FK checks.
    conn.execute("SET session_replication_role = replica")
    _copy(conn, "worker_bootstrap_tokens", TOKEN_COLUMNS, (_token_row(w) for w in workers))
    _copy(
        conn,
        "job_attempts",
        ATTEMPT_COLUMNS,
        (_attempt_row(j) for j in jobs if j.state != "PENDING"),
    )
    _copy(conn, "domain_events", EVENT_COLUMNS, _events(jobs, workers))
    log("  events copied")
    _copy(conn, "job_logs", LOG_COLUMNS, _logs(jobs))
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


# -- rows -----------------------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "name",
    "state",
    "spec",
    "provider_id",
    "queue",
    "attempt",
    "max_attempts",
    "correlation_id",
    "submitted_by",
    "worker_id",
    "exit_code",
    "failure_reason",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "updated_at",
)
WORKER_COLUMNS = (
    "id",
    "name",
    "provider_id",
    "queue",
    "state",
    "infra_ref",
    "labels",
    "current_job_id",
    "last_heartbeat",
    "jobs_executed",
    "termination_reason",
    "created_at",
    "registered_at",
    "terminated_at",
    "updated_at",
)
TOKEN_COLUMNS = ("id", "token_hash", "worker_id", "expires_at", "consumed_at", "created_at")
ATTEMPT_COLUMNS = (
    "job_id",
    "attempt_no",
    "state",
    "task_id",
    "worker_id",
    "started_at",
    "finished_at",
    "exit_code",
    "oom_killed",
)
EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "correlation_id",
    "actor",
    "payload",
    "occurred_at",
)
LOG_COLUMNS = ("job_id", "attempt_no", "stream", "line", "ts")
_EXIT = {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": None, "CANCELLED": None}
_REASON = {"FAILED": "nonzero_exit", "TIMED_OUT": "timeout", "CANCELLED": "cancelled"}


def _queue(provider: int) -> str:
    return f"hodei.{PROVIDERS[provider][0]}"


def _times(j: Job) -> tuple[float, float, float]:
    queued = j.created + 0.05
    started = j.created + 0.3
    return queued, started, started + j.duration


def _job_row(j: Job) -> tuple[object, ...]:
    queued, started, finished = _times(j)
    name = f"job-{j.id.hex[:8]}"
    spec = {
        "name": name,
        "command": f"run-step {j.id.hex[:6]}",
        "timeout_s": 3600,
        "max_attempts": 1,
        "labels": {},
        "regions": [],
        "env": {},
    }
    terminal = j.state not in ("PENDING", "QUEUED", "RUNNING")
    return (
        j.id,
        name,
        j.state,
        json.dumps(spec),
        PROVIDERS[j.provider][1],
        _queue(j.provider),
        1,
        1,
        j.correlation,
        "cli:bench",
        j.worker.id if j.worker else None,
        _EXIT.get(j.state) if terminal else None,
        _REASON.get(j.state) if terminal else None,
        ts(j.created),
        ts(queued) if j.state != "PENDING" else None,
        ts(started) if j.state not in ("PENDING", "QUEUED") else None,
        ts(finished) if terminal else None,
        ts(finished if terminal else j.created),
    )


def _worker_row(w: Worker) -> tuple[object, ...]:
    registered = w.created + 0.6
    heartbeat = (w.ended - 5) if w.ended else registered
    return (
        w.id,
        f"hodei-worker-{w.id.hex[:12]}",
        PROVIDERS[w.provider][1],
        _queue(w.provider),
        w.state,
        f"pid:{abs(hash(w.id)) % 60000}@bench",
        "{}",
        None,
        ts(heartbeat),
        6,
        "idle timeout" if w.ended else None,
        ts(w.created),
        ts(registered),
        ts(w.ended) if w.ended else None,
        ts(w.ended or registered),
    )


def _token_row(w: Worker) -> tuple[object, ...]:
    token_hash = hashlib.sha256(w.token.bytes).hexdigest()
    return (w.token, token_hash, w.id, ts(w.created + 300), ts(w.created + 0.5), ts(w.created))


def _attempt_row(j: Job) -> tuple[object, ...]:
    _, started, finished = _times(j)
    terminal = j.state not in ("QUEUED", "RUNNING")
    return (
        j.id,
        1,
        j.state,
        str(uuid.uuid5(j.id, "task")),
        j.worker.id if j.worker else None,
        ts(started) if j.state != "QUEUED" else None,
        ts(finished) if terminal else None,
        _EXIT.get(j.state) if terminal else None,
        "f",
    )


def _event(
    event_type: str,
    aggregate: str,
    aggregate_id: uuid.UUID,
    actor: str,
    at: float,
    payload: dict[str, object],
    correlation: str | None = None,
) -> tuple[object, ...]:
    return (
        uuid.uuid4(),
        event_type,
        aggregate,
        aggregate_id,
        correlation,
        actor,
        json.dumps(payload),
        ts(at),
    )


def _events(jobs: list[Job], workers: list[Worker]) -> Iterator[tuple[object, ...]]:
    started_workers: set[uuid.UUID] = set()
    for j in jobs:
        if j.worker is not None and j.worker.id not in started_workers:
            started_workers.add(j.worker.id)
            yield from _worker_events(j.worker)
        yield from _job_events(j)
    for w in workers:
        if w.id not in started_workers:
            yield from _worker_events(w)


def _worker_events(w: Worker) -> Iterator[tuple[object, ...]]:
    q = {"queue": _queue(w.provider)}
    me = f"worker:{w.id}"
    yield _event(
        "TokenIssued",
        "token",
        w.token,
        "system:provisioner",
        w.created,
        {"worker_id": str(w.id), "expires_at": ts(w.created + 300)},
    )
    yield _event(
        "WorkerProvisioning",
        "worker",
        w.id,
        "system:provisioner",
        w.created,
        {**q, "provider": PROVIDERS[w.provider][0], "infra_ref": None},
    )
    yield _event("TokenConsumed", "token", w.token, me, w.created + 0.5, {"worker_id": str(w.id)})
    yield _event(
        "WorkerRegistered",
        "worker",
        w.id,
        me,
        w.created + 0.6,
        {**q, "old_state": "PROVISIONING", "new_state": "REGISTERED"},
    )
    yield _event(
        "WorkerReady",
        "worker",
        w.id,
        me,
        w.created + 0.6,
        {**q, "old_state": "REGISTERED", "new_state": "READY"},
    )
    if w.ended:
        yield _event(
            "WorkerTerminated",
            "worker",
            w.id,
            me,
            w.ended,
            {**q, "old_state": "READY", "new_state": "TERMINATED", "reason": "idle timeout"},
        )


def _job_events(j: Job) -> Iterator[tuple[object, ...]]:
    queued, started, finished = _times(j)
    c = j.correlation
    yield _event(
        "JobCreated",
        "job",
        j.id,
        "cli:bench",
        j.created,
        {"old_state": None, "new_state": "PENDING", "provider": PROVIDERS[j.provider][0]},
        c,
    )
    if j.state == "PENDING":
        return
    yield _event(
        "JobQueued",
        "job",
        j.id,
        "system:dispatcher",
        queued,
        {"old_state": "PENDING", "new_state": "QUEUED", "attempt": 1, "queue": _queue(j.provider)},
        c,
    )
    if j.state == "QUEUED" or j.worker is None:
        return
    actor = f"worker:{j.worker.id}"
    yield _event(
        "JobStarted",
        "job",
        j.id,
        actor,
        started,
        {
            "old_state": "QUEUED",
            "new_state": "RUNNING",
            "attempt": 1,
            "worker_id": str(j.worker.id),
        },
        c,
    )
    if j.state == "RUNNING":
        return
    event = next(e for s, _, e in ENDS if s == j.state)
    yield _event(
        event,
        "job",
        j.id,
        actor,
        finished,
        {
            "old_state": "RUNNING",
            "new_state": j.state,
            "attempt": 1,
            "exit_code": _EXIT[j.state],
            "reason": _REASON.get(j.state),
            "duration_ms": int(j.duration * 1000),
        },
        c,
    )


def _logs(jobs: list[Job]) -> Iterator[tuple[object, ...]]:
    for j in jobs:
        if j.state in ("PENDING", "QUEUED"):
            continue
        _, started, _ = _times(j)
        short = j.id.hex[:8]
        for i in range(LOG_LINES):
            stream = "stderr" if i % 5 == 4 else "stdout"
            yield (
                j.id,
                1,
                stream,
                f"step {i} of {short}: processed 1000 records",
                ts(started + i * 0.01),
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
