"""The rows of a generated hodei history (benchmarks/scale.py): jobs, workers, tokens,
attempts, events and log lines, as tuples ready for COPY."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

HISTORY = timedelta(days=30)
JOBS_PER_WORKER = 6
LOG_LINES = 20
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


def queue_of(provider: int) -> str:
    return f"hodei.{PROVIDERS[provider][0]}"


def _times(j: Job) -> tuple[float, float, float]:
    queued = j.created + 0.05
    started = j.created + 0.3
    return queued, started, started + j.duration


def job_row(j: Job) -> tuple[object, ...]:
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
        queue_of(j.provider),
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


def worker_row(w: Worker) -> tuple[object, ...]:
    registered = w.created + 0.6
    heartbeat = (w.ended - 5) if w.ended else registered
    return (
        w.id,
        f"hodei-worker-{w.id.hex[:12]}",
        PROVIDERS[w.provider][1],
        queue_of(w.provider),
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


def token_row(w: Worker) -> tuple[object, ...]:
    token_hash = hashlib.sha256(w.token.bytes).hexdigest()
    return (w.token, token_hash, w.id, ts(w.created + 300), ts(w.created + 0.5), ts(w.created))


def attempt_row(j: Job) -> tuple[object, ...]:
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


def events(jobs: list[Job], workers: list[Worker]) -> Iterator[tuple[object, ...]]:
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
    q = {"queue": queue_of(w.provider)}
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
    """The job's own chain: as far as its state, each step from the one before."""
    queued, started, finished = _times(j)
    worker = f"worker:{j.worker.id}" if j.worker else ""
    created = {"provider": PROVIDERS[j.provider][0]}
    queue_info = {"attempt": 1, "queue": queue_of(j.provider)}
    started_by = {"worker_id": str(j.worker.id) if j.worker else None}
    steps = [
        _Step("JobCreated", "cli:bench", j.created, None, "PENDING", created),
        _Step("JobQueued", "system:dispatcher", queued, "PENDING", "QUEUED", queue_info),
        _Step("JobStarted", worker, started, "QUEUED", "RUNNING", {"attempt": 1, **started_by}),
    ]
    end = next((e for s, _, e in ENDS if s == j.state), None)
    if end is not None:
        result = {"exit_code": _EXIT[j.state], "reason": _REASON.get(j.state)}
        duration = {"attempt": 1, "duration_ms": int(j.duration * 1000)}
        steps.append(_Step(end, worker, finished, "RUNNING", j.state, {**result, **duration}))
    reached = {"PENDING": 1, "QUEUED": 2, "RUNNING": 3}.get(j.state, 4)
    for step in steps[:reached]:
        payload = {"old_state": step.old, "new_state": step.new, **step.extra}
        yield _event(step.event_type, "job", j.id, step.actor, step.at, payload, j.correlation)


@dataclass(frozen=True)
class _Step:
    event_type: str
    actor: str
    at: float
    old: str | None
    new: str
    extra: dict[str, object]


def logs(jobs: list[Job]) -> Iterator[tuple[object, ...]]:
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
