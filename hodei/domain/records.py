"""The records hodei keeps, as plain immutable values (one per table row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain.specs import JobSpec
from hodei.domain.states import (
    AttemptState,
    JobState,
    ProviderHealth,
    ProviderStatus,
    WorkerState,
)


@dataclass(frozen=True)
class Job:
    """A job and where it is now."""

    id: UUID
    name: str
    state: JobState
    spec: JobSpec
    created_at: datetime
    updated_at: datetime
    attempt: int = 0
    max_attempts: int = 1
    provider_id: UUID | None = None
    queue: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None
    worker_id: UUID | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    error: str | None = None
    cancel_requested_at: datetime | None = None
    next_attempt_at: datetime | None = None
    deadline_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Its gates (services/jobs/gates.py): held while it waits for its due time (hold_until,
    # cleared once passed), the jobs it runs after, or a slot of its concurrency key;
    # priority orders the jobs waiting on one queue. Copies of the spec's, for SQL.
    held: bool = False
    hold_until: datetime | None = None
    priority: int = 5
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    # A job runs after this one (set with the dependency). Exact for the gates only as
    # the write that ended the job read it back (transitions.after with its Applied).
    has_dependents: bool = False
    # spec.secret_env as stored: encrypted (store/secrets.py); only a worker opens it.
    # "exclude": serializers that read field metadata (pydantic: the HTTP API) omit it.
    secret_env_sealed: str | None = field(default=None, repr=False, metadata={"exclude": True})

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class Attempt:
    """One run (or try to run) of a job."""

    job_id: UUID
    attempt_no: int
    state: AttemptState
    task_id: str | None = None
    worker_id: UUID | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Worker:
    """An ephemeral worker launched by a provider (or by hand with a token)."""

    id: UUID
    name: str
    provider_id: UUID | None
    queue: str
    state: WorkerState
    created_at: datetime
    updated_at: datetime
    infra_ref: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    current_job_id: UUID | None = None
    last_heartbeat: datetime | None = None
    jobs_executed: int = 0
    running_jobs: int = 0  # its BUSY/READY state follows this
    # From its last recorded heartbeat: the jobs it holds (a command running, or an
    # outcome not written yet) and how many outcomes wait; None if it never reported.
    reported_jobs: tuple[UUID, ...] | None = None
    pending_outcomes: int = 0
    termination_reason: str | None = None
    registered_at: datetime | None = None
    terminated_at: datetime | None = None

    @property
    def unused_token(self) -> bool:
        """PROVISIONING with no process behind it: a token issued by hand (``hodei worker
        token create``) that nothing has presented yet. It takes no job and holds no
        capacity; the provisioner's own workers get ``infra_ref`` when it reserves them."""
        return self.state is WorkerState.PROVISIONING and self.infra_ref is None

    @property
    def holds_capacity(self) -> bool:
        """Counts against max_workers and as serving its queue: live, and not an unused token."""
        return self.state.is_live and not self.unused_token

    @property
    def last_sign_of_life(self) -> datetime:
        """Its last heartbeat, else its registration, else its row's creation: a row with
        neither (a crash, hand-made SQL) is judged by when it was created, never live forever."""
        return self.last_heartbeat or self.registered_at or self.created_at


@dataclass(frozen=True)
class BootstrapToken:
    """A single-use token a worker presents to register. Only the hash is kept."""

    id: UUID
    token_hash: str
    worker_id: UUID
    expires_at: datetime
    created_at: datetime
    consumed_at: datetime | None = None


@dataclass(frozen=True)
class Provider:
    """Where workers come from: the local machine, a Docker engine or a Kubernetes namespace."""

    id: UUID
    name: str
    provider_type: str
    created_at: datetime
    updated_at: datetime
    config: dict[str, Any] = field(default_factory=dict)
    status: ProviderStatus = ProviderStatus.ACTIVE
    health: ProviderHealth = ProviderHealth.UNKNOWN
    health_message: str | None = None
    health_checked_at: datetime | None = None
    priority: int = 0
    max_workers: int = 2
    min_workers: int = 0
    preferred_region: str | None = None
    allowed_regions: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    health_check: dict[str, float] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return queue_for(self.name)


_QUEUE_PREFIX = "hodei."


def queue_for(provider_name: str) -> str:
    """The Celery queue a provider's workers consume."""
    return _QUEUE_PREFIX + provider_name


def provider_of_queue(queue: str | None) -> str | None:
    """The name of the provider whose queue this is (the inverse of :func:`queue_for`)."""
    if queue is None or not queue.startswith(_QUEUE_PREFIX):
        return None
    return queue.removeprefix(_QUEUE_PREFIX)


@dataclass(frozen=True)
class LogLine:
    """One line of a job's output.

    ``data`` is exactly the bytes the command wrote, its newline included (a stream's last
    line may have none): writing every line's ``data`` in order gives back the stream byte
    for byte. ``line`` is their readable text, without the line ending, with bytes that
    are not UTF-8 and NUL bytes shown as U+FFFD. Left out, ``data`` is ``line`` and a
    newline in UTF-8, as for hodei's own notes in the "system" stream.
    """

    job_id: UUID
    attempt_no: int
    stream: str
    line: str
    ts: datetime
    id: int | None = None
    data: bytes = field(default=b"", kw_only=True)

    def __post_init__(self) -> None:
        if not self.data:
            object.__setattr__(self, "data", self.plain_data)

    @property
    def plain_data(self) -> bytes:
        """What ``data`` is for a plain line: ``line`` and a newline, in UTF-8."""
        return (self.line + "\n").encode()
