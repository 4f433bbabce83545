"""The store: a unit of work (:class:`Transaction`) over one repository per table.
``hodei.store`` implements it in SQL, ``hodei.testing`` in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from hodei.domain.events import DomainEvent
from hodei.domain.principals import ApiToken, WorkerCredential
from hodei.domain.records import Attempt, BootstrapToken, Job, LogLine, Provider, Worker
from hodei.domain.schedules import Schedule
from hodei.domain.selection import Candidate
from hodei.domain.states import JobState, WorkerState
from hodei.domain.transitions import Applied, Transition


@dataclass(frozen=True)
class JobQuery:
    """Filters and a keyset page for listing jobs, newest first."""

    states: Collection[JobState] = ()
    name: str | None = None
    correlation_id: str | None = None
    provider_id: UUID | None = None
    limit: int = 50
    before: tuple[datetime, UUID] | None = None  # (created_at, id) of the last row seen


@dataclass(frozen=True)
class EventQuery:
    """Filters for reading the event log in id order."""

    event_types: Collection[str] = ()
    aggregate_ids: Collection[UUID] = ()
    correlation_id: str | None = None
    since: datetime | None = None
    after_id: int | None = None
    limit: int = 100
    newest_first: bool = False


class JobRepository(Protocol):
    def add(self, *jobs: Job) -> None: ...
    def create(self, job: Job, events: Sequence[DomainEvent]) -> None:
        """One new job and its creation events, all or nothing (one statement where
        the database allows), so it is safe in :meth:`Store.single_write`."""
        ...

    def get(self, job_id: UUID) -> Job | None: ...
    def get_by_idempotency_key(self, key: str) -> Job | None: ...
    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        """Ids of jobs from ``low`` to ``high`` (inclusive), in order, at most ``limit``:
        the jobs whose id starts with a prefix (by the primary key's index)."""
        ...

    def search(self, query: JobQuery) -> list[Job]: ...
    def waiting_for_provider(self, *, limit: int) -> list[Job]:
        """PENDING jobs no provider could take at submit (no queue), oldest first."""
        ...

    def due_for_dispatch(
        self, *, now: datetime, created_before: datetime, limit: int, queue: str | None = None
    ) -> list[Job]: ...
    def stranded_queued(self, *, queued_before: datetime, limit: int) -> list[Job]:
        """QUEUED since before ``queued_before`` although an idle worker, READY since
        then, serves the queue: the message was most likely lost."""
        ...

    def running_on_workers(self, worker_ids: Collection[UUID]) -> list[Job]: ...
    def running_past_deadline(self, now: datetime, limit: int) -> list[Job]: ...
    def count_waiting(self, queue: str) -> int:
        """Jobs on ``queue`` that are PENDING (due) or QUEUED: work a worker could take."""
        ...

    def count_running_for_worker(self, worker_id: UUID) -> int: ...
    def is_cancel_requested(self, job_id: UUID) -> bool: ...
    def purge_finished(self, before: datetime, limit: int) -> int: ...


class GateRepository(Protocol):
    """What deciding a held job's gates reads (services/jobs/gates.py)."""

    def add_dependencies(self, pairs: Sequence[tuple[UUID, UUID]]) -> None:
        """Record ``(job_id, depends_on)`` pairs, and set ``has_dependents`` on each
        ``depends_on`` job (under its row lock, as its finish reads it)."""
        ...

    def states_of(self, job_ids: Collection[UUID]) -> dict[UUID, JobState]:
        """The state of each of these jobs that exists."""
        ...

    def dependencies(self, job_id: UUID) -> dict[UUID, JobState]:
        """The jobs ``job_id`` runs after, with their states (a purged one is left out)."""
        ...

    def dependents(self, job_ids: Collection[UUID], *, limit: int) -> list[Job]:
        """Held PENDING jobs that run after any of ``job_ids``."""
        ...

    def lock_key(self, key: str) -> None:
        """Serialise decisions about concurrency key ``key`` until the transaction ends."""
        ...

    def active_with_key(self, key: str) -> int:
        """Jobs of ``key`` that hold a slot: released (not held) and not ended."""
        ...

    def waiting_on_key(self, key: str, *, limit: int) -> list[Job]:
        """Held PENDING jobs of ``key`` past their due time and with every dependency
        ended, highest priority first, then oldest."""
        ...

    def due(self, now: datetime, *, limit: int) -> list[Job]:
        """Held PENDING jobs whose ``hold_until`` has come."""
        ...

    def next_due(self) -> datetime | None:
        """The earliest ``hold_until`` of a held job."""
        ...

    def unblocked(self, *, limit: int) -> list[Job]:
        """Held PENDING jobs past their due time whose dependencies have all ended and,
        for a keyed job, whose key has a free slot: what a lost release left behind."""
        ...


class AttemptRepository(Protocol):
    def add(self, *attempts: Attempt) -> None: ...
    def search(self, job_id: UUID) -> list[Attempt]: ...


class EventRepository(Protocol):
    def add(self, *events: DomainEvent) -> None: ...
    def search(self, query: EventQuery) -> list[DomainEvent]: ...
    def purge(self, before: datetime, aggregate_ids: Collection[UUID]) -> int: ...
    def newest_types(self, aggregate_ids: Collection[UUID]) -> dict[UUID, str]:
        """The type of each aggregate's newest event (those with none are left out)."""
        ...


class WorkerRepository(Protocol):
    def add(self, worker: Worker) -> None: ...
    def get(self, worker_id: UUID) -> Worker | None: ...
    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        """Ids from ``low`` to ``high``, in order: a prefix's workers."""
        ...

    def search(
        self, *, states: Collection[WorkerState] = (), queue: str | None = None, limit: int = 100
    ) -> list[Worker]: ...
    def stale(self, *, heartbeat_before: datetime, limit: int) -> list[Worker]: ...
    def provisioning_without_token(
        self, *, now: datetime, created_before: datetime, limit: int
    ) -> list[Worker]:
        """PROVISIONING workers created before ``created_before`` with no token left to
        register with (none at all, or only a consumed one: a crash between consuming
        it and registering)."""
        ...


class TokenRepository(Protocol):
    def add(self, token: BootstrapToken) -> None: ...
    def consume(self, token_hash: str, now: datetime) -> BootstrapToken | None:
        """Mark the token consumed if it is unconsumed and unexpired; atomic."""
        ...

    def get_by_hash(self, token_hash: str) -> BootstrapToken | None: ...
    def expired_unconsumed(self, now: datetime, limit: int) -> list[BootstrapToken]: ...
    def count_outstanding(self, now: datetime) -> int: ...


class ApiTokenRepository(Protocol):
    def add(self, token: ApiToken) -> None: ...
    def get_by_hash(self, token_hash: str) -> ApiToken | None: ...
    def get_by_name(self, name: str) -> ApiToken | None: ...
    def search(self, *, include_revoked: bool = False) -> list[ApiToken]: ...
    def revoke(self, token_id: UUID, now: datetime) -> bool:
        """Set ``revoked_at`` if the token is not revoked yet; atomic."""
        ...

    def touch(self, token_id: UUID, now: datetime, *, unless_after: datetime) -> None:
        """Set ``last_used_at`` to ``now`` unless it is already after ``unless_after``
        (so a busy token costs one write a minute, not one per request)."""
        ...


class ProviderRepository(Protocol):
    def add(self, provider: Provider) -> None: ...
    def get(self, provider_id: UUID) -> Provider | None: ...
    def get_by_name(self, name: str) -> Provider | None: ...
    def search(self) -> list[Provider]: ...
    def update(self, provider_id: UUID, **changes: Any) -> None: ...
    def lock(self, provider_id: UUID) -> None:
        """Serialise provisioning decisions for one provider until the transaction ends."""
        ...

    def delete(self, provider_id: UUID) -> None:
        """Delete the provider; its workers' and jobs' rows keep their queue, not its id."""
        ...

    def live_worker_counts(self) -> dict[UUID, int]: ...
    def search_with_live_workers(self) -> list[Candidate]:
        """Every provider, by name, with how many of its workers hold capacity (live, and
        not a hand-issued token nothing has presented)."""
        ...


class LogRepository(Protocol):
    def append(self, lines: Sequence[LogLine]) -> None: ...
    def read(
        self, job_id: UUID, *, after_id: int = 0, limit: int = 1000, tail: int | None = None
    ) -> list[LogLine]:
        """Up to ``limit`` lines after ``after_id`` in order (``tail``: the last N instead)."""
        ...

    def tail_start(self, job_id: UUID, lines: int) -> int:
        """The ``after_id`` from which reading gives the job's last ``lines`` lines."""
        ...

    def count(self, job_id: UUID, attempt_no: int) -> int: ...


@dataclass(frozen=True)
class Fire:
    """One recorded fire of a schedule."""

    schedule_id: UUID
    fire_time: datetime
    job_id: UUID | None
    trigger: str
    fired_at: datetime


class ScheduleRepository(Protocol):
    def add(self, schedule: Schedule) -> None: ...
    def get_by_name(self, name: str) -> Schedule | None: ...
    def search(self) -> list[Schedule]: ...
    def due(self, now: datetime, *, limit: int) -> list[Schedule]:
        """Active schedules whose next tick is at or before ``now``, soonest first."""
        ...

    def next_due_at(self) -> datetime | None:
        """The soonest next tick of any active schedule."""
        ...

    def update(self, schedule_id: UUID, **changes: Any) -> None: ...
    def advance(self, schedule_id: UUID, expected_next: datetime, **changes: Any) -> bool:
        """Apply ``changes`` if the schedule's next tick is still ``expected_next`` (so two
        schedulers cannot both move it); True if it did."""
        ...

    def delete(self, schedule_id: UUID) -> None: ...
    def record_fire(self, fire: Fire) -> bool:
        """Record a fire unless this (schedule, tick) is recorded already; True if new."""
        ...

    def fires(self, schedule_id: UUID, *, limit: int) -> list[Fire]:
        """The latest fires, newest first."""
        ...


class WorkerCredentialRepository(Protocol):
    """API-mode workers' credentials (only their sha256), one per worker."""

    def put(self, credential: WorkerCredential) -> None:
        """Store the worker's credential, replacing one it had."""
        ...

    def find(self, token_hash: str) -> tuple[Worker, datetime] | None:
        """The worker a credential is for and when the credential expires."""
        ...

    def renew(self, worker_id: UUID, expires_at: datetime) -> None: ...


class Transaction(Protocol):
    """One database transaction: every state change and its event commit together."""

    jobs: JobRepository
    attempts: AttemptRepository
    events: EventRepository
    workers: WorkerRepository
    tokens: TokenRepository
    providers: ProviderRepository
    logs: LogRepository
    api_tokens: ApiTokenRepository
    schedules: ScheduleRepository
    gates: GateRepository
    worker_credentials: WorkerCredentialRepository

    def apply(self, transition: Transition) -> Applied:
        """Write ``transition`` (see :mod:`hodei.domain.transitions`) if its guard holds:
        all of it, or nothing when the record is no longer where it was expected."""
        ...

    def apply_all(self, transitions: Sequence[Transition]) -> list[Transition]:
        """:meth:`apply` each (in a few set-based statements where the store can);
        returns those written."""
        ...


class Store(Protocol):
    def apply(self, transition: Transition) -> Applied:
        """:meth:`Transaction.apply` as a unit of work of its own: one round trip where
        the store can write the transition as one statement (see ``ONE_STATEMENT``)."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Commit on a clean exit, roll back on an exception."""
        ...

    def single_write(self) -> AbstractContextManager[Transaction]:
        """For a unit of work whose one write the store makes atomic by itself
        (``tx.jobs.create``), plus any reads. Where that write is
        one statement (PostgreSQL) there is no transaction around it, which spares
        BEGIN and COMMIT their round trips; elsewhere it is an ordinary transaction."""
        ...

    def reading(self) -> AbstractContextManager[Transaction]:
        """A transaction that only reads (it is rolled back): on SQLite it neither waits
        for a writer nor holds one up."""
        ...
