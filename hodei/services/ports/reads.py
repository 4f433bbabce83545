"""Read-only ports for the operators' views: status, timeline, events, diagnosis, doctor.

``hodei.store.read_models`` implements them in SQL. Every query here must stay cheap
on a history of millions of jobs: indexed lookups, or scans bounded by what is active
now (queued and running jobs, live workers) or by a time window.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from hodei.domain.events import DomainEvent
from hodei.domain.records import Attempt, BootstrapToken, Job, Provider, Worker
from hodei.domain.schedules import Schedule
from hodei.domain.states import JobState
from hodei.services.ports.store import EventQuery


@dataclass(frozen=True)
class QueueDepth:
    """The active jobs of one queue (one provider)."""

    queue: str
    pending: int
    queued: int
    running: int
    oldest_queued_at: datetime | None
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class ChainAnomaly:
    """A state-change event that does not follow from the one before it, or the last one
    that does not match the job's stored state. The service decides which problem it is."""

    job_id: UUID
    event_id: int
    event_type: str
    old_state: str | None
    new_state: str | None
    previous_state: str | None  # new_state of the job's previous state change
    is_first: bool
    is_last: bool
    job_state: str
    step_ok: bool  # False: this change itself is wrong; True: only the end is (is_last)


@dataclass(frozen=True)
class TransitionRules:
    """The allowed (old, new) job state pairs, from ``hodei.domain.states.allowed``."""

    normal: frozenset[tuple[str, str]]
    manual_retry: frozenset[tuple[str, str]]
    manual_event_type: str
    initial_state: str


class OperatorReads(Protocol):
    """Queries on one read connection (one consistent view where the database gives one)."""

    # -- status ---------------------------------------------------------------------
    def state_counts(self) -> dict[str, dict[str, int]]:
        """``{"job": {state: n}, "worker": {state: n}}`` from the trigger-kept tally."""
        ...

    def tally_rows(self) -> int:
        """How many unfolded rows the tally has (folding keeps reads cheap)."""
        ...

    def queue_depths(self) -> list[QueueDepth]: ...
    def providers(self) -> list[Provider]: ...
    def schedules(self) -> list[Schedule]: ...
    def live_workers(self, *, queue: str | None = None, limit: int = 1000) -> list[Worker]: ...
    def live_worker_counts(self) -> dict[tuple[UUID | None, str], int]:
        """Workers holding capacity (:attr:`Worker.holds_capacity`: live, not an unused
        hand-issued token) counted by (provider id, state)."""
        ...

    def tokens_outstanding(self, now: datetime) -> int: ...
    def scheduler_leader(self) -> tuple[str, datetime, datetime] | None:
        """The scheduler that last said it leads: (holder, since, last renewed)."""
        ...

    # -- jobs, timeline and events -------------------------------------------------
    def job(self, job_id: UUID) -> Job | None: ...
    def attempts(self, job_id: UUID) -> list[Attempt]: ...
    def worker(self, worker_id: UUID) -> Worker | None: ...
    def jobs_in_workflow(self, correlation_id: str, limit: int) -> list[UUID]: ...
    def related_aggregates(self, job_ids: Collection[UUID]) -> list[UUID]:
        """The workers that ran these jobs' attempts, those launched for their queues while
        they waited that never started (:meth:`launch_failures`), and their tokens."""
        ...

    def launch_failures(self, job_ids: Collection[UUID], limit: int = 50) -> list[Worker]:
        """PROVISION_FAILED workers launched for these jobs' queues while they waited."""
        ...

    def events_of(
        self,
        aggregate_ids: Collection[UUID],
        correlation_id: str | None,
        limit: int,
        *,
        related: Collection[UUID] = (),
        related_since: datetime | None = None,
    ) -> list[DomainEvent]:
        """Events of these aggregates, or with this correlation id, and those of the
        ``related`` aggregates that occurred at or after ``related_since``, in id order."""
        ...

    def events(self, query: EventQuery) -> list[DomainEvent]: ...
    def queue_position(self, job: Job) -> int:
        """How many QUEUED jobs on the job's queue go before it: a higher priority, or
        the same one and queued before it (the order Redis and RabbitMQ deliver in)."""
        ...

    def queued_with_higher_priority(self, job: Job) -> int:
        """How many QUEUED jobs on the job's queue have a higher priority than it."""
        ...

    # -- gates (services/jobs/gates.py) -----------------------------------------------------
    def dependencies(self, job_id: UUID) -> dict[UUID, JobState]:
        """The jobs ``job_id`` runs after, with their states."""
        ...

    def active_with_key(self, key: str) -> int:
        """Jobs of concurrency key ``key`` holding a slot (released, not ended)."""
        ...

    def held_counts(self) -> dict[str, int]:
        """Held PENDING jobs by what they wait for first: ``due_time``,
        ``dependencies``, ``concurrency``."""
        ...

    def queued_behind_priority(self) -> int:
        """QUEUED jobs with a higher-priority job queued on the same queue."""
        ...

    # -- doctor ----------------------------------------------------------------------
    def chain_anomalies(
        self, *, since: datetime, rules: TransitionRules, limit: int
    ) -> list[ChainAnomaly]: ...
    def jobs_without_events(self, *, since: datetime, limit: int) -> list[Job]: ...
    def pending_unpublished(self, *, before: datetime, limit: int) -> list[Job]:
        """PENDING since before ``before`` and not waiting for a retry that is due later."""
        ...

    def running_on_dead_workers(self, *, limit: int) -> list[tuple[Job, Worker | None]]: ...
    def running_unreported(self, *, limit: int) -> list[tuple[Job, Worker]]:
        """RUNNING jobs whose live worker, in a heartbeat recorded after the job started,
        did not name the job among those it holds."""
        ...

    def unmarked_expired_tokens(
        self, *, expired_before: datetime, limit: int
    ) -> list[BootstrapToken]:
        """Unconsumed tokens past expiry whose worker is still PROVISIONING."""
        ...

    def unreaped_workers(self, *, heartbeat_before: datetime, limit: int) -> list[Worker]:
        """Registered workers silent since before ``heartbeat_before`` and not yet LOST."""
        ...

    def last_health_change(self, provider_id: UUID) -> datetime | None: ...


class ReadStore(Protocol):
    def read(self) -> AbstractContextManager[OperatorReads]:
        """A read-only unit of work."""
        ...

    def fold_state_counts(self) -> int:
        """Collapse the tally to one row per state; returns the rows folded away."""
        ...


class EventFeed(Protocol):
    """The event log as a stream for followers (``hodei events follow``)."""

    settle_delay_s: float
    """How long a gap in ids must be seen before asking whether it is settled."""

    def listen(self) -> None:
        """Start listening for commits (before the first read, so none is missed)."""
        ...

    def last_id(self) -> int: ...
    def read_after(self, after_id: int, limit: int) -> list[DomainEvent]: ...
    def horizon(self) -> int:
        """A mark such that once :meth:`settled` says so, every transaction that was in
        flight when it was taken has ended (PostgreSQL: the snapshot's xmax)."""
        ...

    def settled(self, horizon: int) -> bool: ...
    def wait(self, timeout_s: float) -> None:
        """Return when new events may have been committed, or after ``timeout_s``."""
        ...

    def close(self) -> None: ...


EventStream = Iterator[DomainEvent]
