"""Job, attempt and worker states, and their transition tables (docs/architecture.md,
"States")."""

from __future__ import annotations

from enum import StrEnum

from hodei.errors import InvalidTransition


class JobState(StrEnum):
    """Where a job is in its life."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)
ACTIVE_STATES = frozenset({JobState.PENDING, JobState.QUEUED, JobState.RUNNING})

_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset(
        {
            JobState.RUNNING,
            JobState.CANCELLED,
            JobState.PENDING,
            JobState.FAILED,  # its provider cannot start a worker (a permanent error)
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.CANCELLED,
            JobState.PENDING,  # a retry or a requeue after a lost worker
        }
    ),
}
# Terminal states never change by themselves; only an explicit `hodei job retry` reopens one,
# as a new attempt (the old attempt's record is kept as it was).
_MANUAL_RETRY_FROM = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED})


def allowed(old: JobState, new: JobState, *, manual_retry: bool = False) -> bool:
    """Whether a job may go from ``old`` to ``new``."""
    if manual_retry:
        return old in _MANUAL_RETRY_FROM and new is JobState.PENDING
    return new in _TRANSITIONS.get(old, frozenset())


def ensure_transition(old: JobState, new: JobState, *, manual_retry: bool = False) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is allowed."""
    if not allowed(old, new, manual_retry=manual_retry):
        raise InvalidTransition(f"a job cannot go from {old} to {new}")


class AttemptState(StrEnum):
    """The state of one attempt of a job."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    LOST = "LOST"


class FailureReason(StrEnum):
    """Why a job (or an attempt) did not succeed."""

    NONZERO_EXIT = "nonzero_exit"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    NO_PROVIDER = "no_provider"
    PROVISIONING_FAILED = "provisioning_failed"
    SPAWN_ERROR = "spawn_error"
    QUEUE_TIMEOUT = "queue_timeout"
    DEPENDENCY_FAILED = "dependency_failed"


class WorkerState(StrEnum):
    """Where a worker is in its life."""

    PROVISIONING = "PROVISIONING"
    REGISTERED = "REGISTERED"
    READY = "READY"
    BUSY = "BUSY"
    # Registered, but it cannot reach its broker now (Celery is reconnecting): it takes
    # no job until it is back, READY or BUSY again, or gives up and exits.
    DEGRADED = "DEGRADED"
    DRAINING = "DRAINING"
    TERMINATED = "TERMINATED"
    LOST = "LOST"
    PROVISION_FAILED = "PROVISION_FAILED"

    @property
    def is_live(self) -> bool:
        return self in LIVE_WORKER_STATES


LIVE_WORKER_STATES = frozenset(
    {
        WorkerState.PROVISIONING,
        WorkerState.REGISTERED,
        WorkerState.READY,
        WorkerState.BUSY,
        WorkerState.DEGRADED,
        WorkerState.DRAINING,
    }
)
# Workers that have a process consuming their queue (and so must heartbeat).
REGISTERED_WORKER_STATES = LIVE_WORKER_STATES - {WorkerState.PROVISIONING}
_LIVE_TO = frozenset(
    {WorkerState.READY, WorkerState.BUSY, WorkerState.DEGRADED, WorkerState.DRAINING,
     WorkerState.TERMINATED, WorkerState.LOST}
)  # fmt: skip
_WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.PROVISIONING: frozenset(
        {
            WorkerState.READY,  # registered (REGISTERED is only an event on the way)
            WorkerState.DRAINING,
            WorkerState.TERMINATED,
            WorkerState.PROVISION_FAILED,
        }
    ),
    WorkerState.REGISTERED: _LIVE_TO,
    WorkerState.READY: _LIVE_TO,
    WorkerState.BUSY: _LIVE_TO,
    WorkerState.DEGRADED: _LIVE_TO,
    WorkerState.DRAINING: frozenset({WorkerState.TERMINATED, WorkerState.LOST}),
}


def worker_allowed(old: WorkerState, new: WorkerState) -> bool:
    """Whether a worker may go from ``old`` to ``new`` (staying put is always allowed)."""
    return old is new or new in _WORKER_TRANSITIONS.get(old, frozenset())


def ensure_worker_transition(old: WorkerState, new: WorkerState) -> None:
    """Raise :class:`InvalidTransition` unless a worker may go from ``old`` to ``new``."""
    if not worker_allowed(old, new):
        raise InvalidTransition(f"a worker cannot go from {old} to {new}")


# ``infra_ref`` of a worker the provisioner has reserved and is launching: a process is
# (about to be) behind it, unlike a hand-issued token's row, whose infra_ref stays empty.
LAUNCHING_REF = "launching"


class ProviderStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    DRAINING = "DRAINING"


class ProviderHealth(StrEnum):
    UNKNOWN = "UNKNOWN"
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
