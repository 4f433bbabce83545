"""In-memory stand-ins for hodei's ports, shipped for tests of the use cases.

``InMemoryStore`` implements :class:`hodei.services.ports.store.Store` (the write side;
not the operators' read models of ``services/ports/reads.py``) with plain dictionaries:
a transaction works on a copy and replaces the state when it commits, so a failed unit
of work leaves nothing behind, as on a database. ``RecordingPublisher`` keeps what would go on the
broker (``join`` then delivers it to a worker, like dramatiq's ``StubBroker.join``),
and ``FakeLauncher`` what a provider would start. None of them imports any
infrastructure: a use-case test runs in milliseconds on a bare machine::

    store, publisher = InMemoryStore(), RecordingPublisher()
    submit_jobs(store, clock, publisher, [spec], ...)
    assert publisher.published[0].job_id == ...

``tests/integration/test_store_contract.py`` runs the same scenarios against this
store, SQLite and PostgreSQL, so it behaves like the real ones where use cases look.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hodei.core import Wiring
from hodei.domain.events import DomainEvent
from hodei.domain.principals import ApiToken, WorkerCredential
from hodei.domain.records import Attempt, BootstrapToken, Job, LogLine, Provider, Worker
from hodei.domain.schedules import Schedule
from hodei.domain.selection import Candidate
from hodei.domain.states import (
    REGISTERED_WORKER_STATES,
    TERMINAL_STATES,
    JobState,
    ProviderHealth,
    WorkerState,
)
from hodei.domain.transitions import (
    Applied,
    Kind,
    Transition,
    WorkerChange,
    WorkerCount,
)
from hodei.errors import (
    BrokerUnavailable,
    Conflict,
    DuplicateIdempotencyKey,
    InvalidConfiguration,
)
from hodei.services.jobs.attempts import Outcome, claim_attempt, finish_attempt
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import (
    HealthProbe,
    HealthReport,
    InfrastructureInspector,
    LaunchRequest,
    WorkerLauncher,
)
from hodei.services.ports.publisher import Publication, TaskPublisher
from hodei.services.ports.store import (
    ApiTokenRepository,
    AttemptRepository,
    EventQuery,
    EventRepository,
    Fire,
    GateRepository,
    JobQuery,
    JobRepository,
    LogRepository,
    ProviderRepository,
    ScheduleRepository,
    Store,
    TokenRepository,
    Transaction,
    WorkerCredentialRepository,
    WorkerRepository,
)
from hodei.settings import Settings

__all__ = [
    "FakeLauncher",
    "FakeWiring",
    "FixedClock",
    "InMemoryStore",
    "RecordingPublisher",
]


class FixedClock:
    """A clock that moves only when told (``advance``)."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


@dataclass
class _State:
    jobs: dict[UUID, Job] = field(default_factory=dict)
    attempts: dict[tuple[UUID, int], Attempt] = field(default_factory=dict)
    events: list[DomainEvent] = field(default_factory=list)
    workers: dict[UUID, Worker] = field(default_factory=dict)
    tokens: dict[str, BootstrapToken] = field(default_factory=dict)
    providers: dict[UUID, Provider] = field(default_factory=dict)
    logs: list[LogLine] = field(default_factory=list)
    api_tokens: dict[UUID, ApiToken] = field(default_factory=dict)
    schedules: dict[UUID, Schedule] = field(default_factory=dict)
    fires: dict[tuple[UUID, datetime], Fire] = field(default_factory=dict)
    dependencies: set[tuple[UUID, UUID]] = field(default_factory=set)
    worker_credentials: dict[UUID, WorkerCredential] = field(default_factory=dict)
    next_event_id: int = 1
    next_log_id: int = 1

    def copy(self) -> _State:
        # Records are immutable: copying the containers is a full snapshot.
        return replace(
            self,
            jobs=dict(self.jobs),
            attempts=dict(self.attempts),
            events=list(self.events),
            workers=dict(self.workers),
            tokens=dict(self.tokens),
            providers=dict(self.providers),
            logs=list(self.logs),
            api_tokens=dict(self.api_tokens),
            schedules=dict(self.schedules),
            fires=dict(self.fires),
            dependencies=set(self.dependencies),
            worker_credentials=dict(self.worker_credentials),
        )


class _Jobs:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, *jobs: Job) -> None:
        for job in jobs:
            key = job.idempotency_key
            if key is not None and self.get_by_idempotency_key(key) is not None:
                raise DuplicateIdempotencyKey("another job was just submitted with this key")
            self._s.jobs[job.id] = job

    def create(self, job: Job, events: Sequence[DomainEvent]) -> None:
        self.add(job)
        _Events(self._s).add(*events)

    def get(self, job_id: UUID) -> Job | None:
        return self._s.jobs.get(job_id)

    def get_by_idempotency_key(self, key: str) -> Job | None:
        return next((j for j in self._s.jobs.values() if j.idempotency_key == key), None)

    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        return sorted(i for i in self._s.jobs if low <= i <= high)[:limit]

    def search(self, query: JobQuery) -> list[Job]:
        found = [
            j
            for j in self._s.jobs.values()
            if (not query.states or j.state in query.states)
            and (not query.name or j.name == query.name)
            and (not query.correlation_id or j.correlation_id == query.correlation_id)
            and (not query.provider_id or j.provider_id == query.provider_id)
            and (query.before is None or (j.created_at, j.id) < query.before)
        ]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[: query.limit]

    def waiting_for_provider(self, *, limit: int) -> list[Job]:
        found = [
            j
            for j in self._s.jobs.values()
            if j.state is JobState.PENDING and not j.queue and not j.held
        ]
        return sorted(found, key=lambda j: (j.created_at, j.id))[:limit]

    def due_for_dispatch(
        self, *, now: datetime, created_before: datetime, limit: int, queue: str | None = None
    ) -> list[Job]:
        found = [
            j
            for j in self._s.jobs.values()
            if j.state is JobState.PENDING
            and j.queue is not None
            and not j.held
            and (queue is None or j.queue == queue)
            and (
                (j.next_attempt_at is None and j.updated_at < created_before)
                or (j.next_attempt_at is not None and j.next_attempt_at <= now)
            )
        ]
        return sorted(found, key=lambda j: j.created_at)[:limit]

    def stranded_queued(self, *, queued_before: datetime, limit: int) -> list[Job]:
        def busy_since(worker_id: UUID) -> bool:
            return any(
                j.worker_id == worker_id
                and (
                    (j.started_at is not None and j.started_at >= queued_before)
                    or (j.finished_at is not None and j.finished_at >= queued_before)
                )
                for j in self._s.jobs.values()
            )

        idle_queues = {
            w.queue
            for w in self._s.workers.values()
            if w.state is WorkerState.READY
            and w.registered_at is not None
            and w.registered_at < queued_before
            and not busy_since(w.id)
        }
        found = [
            j
            for j in self._s.jobs.values()
            if j.state is JobState.QUEUED
            and j.queued_at is not None
            and j.queued_at < queued_before
            and j.queue in idle_queues
        ]
        return sorted(found, key=lambda j: j.queued_at or j.created_at)[:limit]

    def running_on_workers(self, worker_ids: Collection[UUID]) -> list[Job]:
        ids = set(worker_ids)
        return [
            j for j in self._s.jobs.values() if j.state is JobState.RUNNING and j.worker_id in ids
        ]

    def running_past_deadline(self, now: datetime, limit: int) -> list[Job]:
        gone = {WorkerState.LOST, WorkerState.TERMINATED}

        def worker_gone(job: Job) -> bool:
            worker = self._s.workers.get(job.worker_id) if job.worker_id else None
            return job.worker_id is None or (worker is not None and worker.state in gone)

        return [
            j
            for j in self._s.jobs.values()
            if j.state is JobState.RUNNING
            and j.deadline_at is not None
            and j.deadline_at < now
            and worker_gone(j)
        ][:limit]

    def count_waiting(self, queue: str) -> int:
        waiting = (JobState.PENDING, JobState.QUEUED)
        return sum(
            1
            for j in self._s.jobs.values()
            if j.queue == queue and j.state in waiting and not j.held
        )

    def count_running_for_worker(self, worker_id: UUID) -> int:
        return sum(
            1
            for j in self._s.jobs.values()
            if j.worker_id == worker_id and j.state is JobState.RUNNING
        )

    def is_cancel_requested(self, job_id: UUID) -> bool:
        job = self._s.jobs.get(job_id)
        return job is not None and job.cancel_requested_at is not None

    def purge_finished(self, before: datetime, limit: int) -> int:
        ids = [
            j.id
            for j in self._s.jobs.values()
            if j.state in TERMINAL_STATES and j.finished_at is not None and j.finished_at < before
        ][:limit]
        gone = set(ids)
        for job_id in ids:
            del self._s.jobs[job_id]
        self._s.attempts = {k: a for k, a in self._s.attempts.items() if k[0] not in gone}
        self._s.events = [e for e in self._s.events if e.aggregate_id not in gone]
        self._s.logs = [ln for ln in self._s.logs if ln.job_id not in gone]
        return len(ids)


class _Gates:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add_dependencies(self, pairs: Sequence[tuple[UUID, UUID]]) -> None:
        self._s.dependencies.update(pairs)
        for _, parent in pairs:
            if parent in self._s.jobs:
                self._s.jobs[parent] = replace(self._s.jobs[parent], has_dependents=True)

    def states_of(self, job_ids: Collection[UUID]) -> dict[UUID, JobState]:
        return {i: self._s.jobs[i].state for i in job_ids if i in self._s.jobs}

    def dependencies(self, job_id: UUID) -> dict[UUID, JobState]:
        return self.states_of([d for j, d in self._s.dependencies if j == job_id])

    def _held(self) -> list[Job]:
        found = [j for j in self._s.jobs.values() if j.held and j.state is JobState.PENDING]
        return sorted(found, key=lambda j: (-j.priority, j.created_at))

    def _free(self, job: Job) -> bool:
        return job.hold_until is None and all(
            s in TERMINAL_STATES for s in self.dependencies(job.id).values()
        )

    def dependents(self, job_ids: Collection[UUID], *, limit: int) -> list[Job]:
        ids = set(job_ids)
        waiting = {j for j, d in self._s.dependencies if d in ids}
        return [j for j in self._held() if j.id in waiting][:limit]

    def lock_key(self, key: str) -> None:
        return None  # one transaction at a time

    def active_with_key(self, key: str) -> int:
        return sum(
            1
            for j in self._s.jobs.values()
            if j.concurrency_key == key and not j.held and j.state not in TERMINAL_STATES
        )

    def waiting_on_key(self, key: str, *, limit: int) -> list[Job]:
        return [j for j in self._held() if j.concurrency_key == key and self._free(j)][:limit]

    def due(self, now: datetime, *, limit: int) -> list[Job]:
        found = [j for j in self._held() if j.hold_until is not None and j.hold_until <= now]
        return sorted(found, key=lambda j: j.hold_until or now)[:limit]

    def next_due(self) -> datetime | None:
        return min((j.hold_until for j in self._held() if j.hold_until), default=None)

    def unblocked(self, *, limit: int) -> list[Job]:
        return [
            j
            for j in self._held()
            if self._free(j)
            and (
                j.concurrency_key is None
                or self.active_with_key(j.concurrency_key) < (j.max_concurrency or 1)
            )
        ][:limit]


class _Attempts:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, *attempts: Attempt) -> None:
        for attempt in attempts:
            self._s.attempts[(attempt.job_id, attempt.attempt_no)] = attempt

    def search(self, job_id: UUID) -> list[Attempt]:
        found = [a for (j, _), a in self._s.attempts.items() if j == job_id]
        return sorted(found, key=lambda a: a.attempt_no)


class _Events:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, *events: DomainEvent) -> None:
        for event in events:
            self._s.events.append(replace(event, id=self._s.next_event_id))
            self._s.next_event_id += 1

    def search(self, query: EventQuery) -> list[DomainEvent]:
        found = [
            e
            for e in self._s.events
            if (not query.event_types or e.event_type in query.event_types)
            and (not query.aggregate_ids or e.aggregate_id in query.aggregate_ids)
            and (not query.correlation_id or e.correlation_id == query.correlation_id)
            and (query.since is None or e.occurred_at >= query.since)
            and (query.after_id is None or (e.id or 0) > query.after_id)
        ]
        found.sort(key=lambda e: e.id or 0, reverse=query.newest_first)
        return found[: query.limit]

    def newest_types(self, aggregate_ids: Collection[UUID]) -> dict[UUID, str]:
        wanted = set(aggregate_ids)
        return {e.aggregate_id: e.event_type for e in self._s.events if e.aggregate_id in wanted}

    def purge(self, before: datetime, aggregate_ids: Collection[UUID]) -> int:
        ids = set(aggregate_ids)

        def goes(e: DomainEvent) -> bool:
            return e.occurred_at < before and (not ids or e.aggregate_id in ids)

        kept = [e for e in self._s.events if not goes(e)]
        purged = len(self._s.events) - len(kept)
        self._s.events = kept
        return purged


class _Workers:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, worker: Worker) -> None:
        self._s.workers[worker.id] = worker

    def get(self, worker_id: UUID) -> Worker | None:
        return self._s.workers.get(worker_id)

    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        return sorted(i for i in self._s.workers if low <= i <= high)[:limit]

    def search(
        self, *, states: Collection[WorkerState] = (), queue: str | None = None, limit: int = 100
    ) -> list[Worker]:
        found = [
            w
            for w in self._s.workers.values()
            if (not states or w.state in states) and (not queue or w.queue == queue)
        ]
        return sorted(found, key=lambda w: w.created_at, reverse=True)[:limit]

    def stale(self, *, heartbeat_before: datetime, limit: int) -> list[Worker]:
        return [
            w
            for w in self._s.workers.values()
            if w.state in REGISTERED_WORKER_STATES and w.last_sign_of_life < heartbeat_before
        ][:limit]

    def provisioning_without_token(
        self, *, now: datetime, created_before: datetime, limit: int
    ) -> list[Worker]:
        usable = {
            t.worker_id
            for t in self._s.tokens.values()
            if t.consumed_at is None and t.expires_at > now
        }
        return [
            w
            for w in self._s.workers.values()
            if w.state is WorkerState.PROVISIONING
            and w.created_at < created_before
            and w.id not in usable
        ][:limit]


class _Tokens:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, token: BootstrapToken) -> None:
        self._s.tokens[token.token_hash] = token

    def consume(self, token_hash: str, now: datetime) -> BootstrapToken | None:
        token = self._s.tokens.get(token_hash)
        if token is None or token.consumed_at is not None or token.expires_at <= now:
            return None
        self._s.tokens[token_hash] = consumed = replace(token, consumed_at=now)
        return consumed

    def get_by_hash(self, token_hash: str) -> BootstrapToken | None:
        return self._s.tokens.get(token_hash)

    def expired_unconsumed(self, now: datetime, limit: int) -> list[BootstrapToken]:
        def provisioning(t: BootstrapToken) -> bool:
            worker = self._s.workers.get(t.worker_id)
            return worker is not None and worker.state is WorkerState.PROVISIONING

        return [
            t
            for t in self._s.tokens.values()
            if t.consumed_at is None and t.expires_at <= now and provisioning(t)
        ][:limit]

    def count_outstanding(self, now: datetime) -> int:
        return sum(
            1 for t in self._s.tokens.values() if t.consumed_at is None and t.expires_at > now
        )


class _Providers:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, provider: Provider) -> None:
        self._s.providers[provider.id] = provider

    def get(self, provider_id: UUID) -> Provider | None:
        return self._s.providers.get(provider_id)

    def get_by_name(self, name: str) -> Provider | None:
        return next((p for p in self._s.providers.values() if p.name == name), None)

    def search(self) -> list[Provider]:
        return sorted(self._s.providers.values(), key=lambda p: p.name)

    def update(self, provider_id: UUID, **changes: Any) -> None:
        if "allowed_regions" in changes:
            changes["allowed_regions"] = tuple(changes["allowed_regions"])
        self._s.providers[provider_id] = replace(self._s.providers[provider_id], **changes)

    def lock(self, provider_id: UUID) -> None:
        """Nothing to do: one transaction at a time (see :class:`InMemoryStore`)."""

    def delete(self, provider_id: UUID) -> None:
        s = self._s
        s.workers = {
            k: replace(w, provider_id=None) if w.provider_id == provider_id else w
            for k, w in s.workers.items()
        }
        s.jobs = {
            k: replace(j, provider_id=None) if j.provider_id == provider_id else j
            for k, j in s.jobs.items()
        }
        s.providers.pop(provider_id, None)

    def live_worker_counts(self) -> dict[UUID, int]:
        counts: dict[UUID, int] = {}
        for w in self._s.workers.values():
            if w.holds_capacity and w.provider_id is not None:
                counts[w.provider_id] = counts.get(w.provider_id, 0) + 1
        return counts

    def search_with_live_workers(self) -> list[Candidate]:
        counts = self.live_worker_counts()
        return [Candidate(p, counts.get(p.id, 0)) for p in self.search()]


class _Logs:
    def __init__(self, s: _State) -> None:
        self._s = s

    def append(self, lines: Sequence[LogLine]) -> None:
        for line in lines:
            self._s.logs.append(replace(line, id=self._s.next_log_id))
            self._s.next_log_id += 1

    def _of(self, job_id: UUID) -> list[LogLine]:
        return [ln for ln in self._s.logs if ln.job_id == job_id]

    def read(
        self, job_id: UUID, *, after_id: int = 0, limit: int = 1000, tail: int | None = None
    ) -> list[LogLine]:
        lines = [ln for ln in self._of(job_id) if (ln.id or 0) > after_id]
        if tail is not None:
            return lines[-tail:] if tail else []
        return lines[:limit]

    def tail_start(self, job_id: UUID, lines: int) -> int:
        ids = [ln.id or 0 for ln in self._of(job_id)]
        return ids[-lines - 1] if len(ids) > lines else 0

    def count(self, job_id: UUID, attempt_no: int) -> int:
        return sum(1 for ln in self._of(job_id) if ln.attempt_no == attempt_no)


class _ApiTokens:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, token: ApiToken) -> None:
        self._s.api_tokens[token.id] = token

    def get_by_hash(self, token_hash: str) -> ApiToken | None:
        return next((t for t in self._s.api_tokens.values() if t.token_hash == token_hash), None)

    def get_by_name(self, name: str) -> ApiToken | None:
        return next((t for t in self._s.api_tokens.values() if t.name == name), None)

    def search(self, *, include_revoked: bool = False) -> list[ApiToken]:
        found = [t for t in self._s.api_tokens.values() if include_revoked or not t.revoked_at]
        return sorted(found, key=lambda t: (t.created_at, t.name))

    def revoke(self, token_id: UUID, now: datetime) -> bool:
        token = self._s.api_tokens.get(token_id)
        if token is None or token.revoked_at is not None:
            return False
        self._s.api_tokens[token_id] = replace(token, revoked_at=now)
        return True

    def touch(self, token_id: UUID, now: datetime, *, unless_after: datetime) -> None:
        token = self._s.api_tokens.get(token_id)
        if token is not None and (token.last_used_at is None or token.last_used_at <= unless_after):
            self._s.api_tokens[token_id] = replace(token, last_used_at=now)


class _Schedules:
    def __init__(self, s: _State) -> None:
        self._s = s

    def add(self, schedule: Schedule) -> None:
        if self.get_by_name(schedule.name) is not None:
            raise Conflict(f"a schedule named {schedule.name!r} exists already")
        self._s.schedules[schedule.id] = schedule

    def get_by_name(self, name: str) -> Schedule | None:
        return next((x for x in self._s.schedules.values() if x.name == name), None)

    def search(self) -> list[Schedule]:
        return sorted(self._s.schedules.values(), key=lambda x: x.name)

    def _active(self) -> list[Schedule]:
        return [x for x in self._s.schedules.values() if not x.paused and x.next_fire_at]

    def due(self, now: datetime, *, limit: int) -> list[Schedule]:
        found = [x for x in self._active() if x.next_fire_at and x.next_fire_at <= now]
        return sorted(found, key=lambda x: x.next_fire_at or now)[:limit]

    def next_due_at(self) -> datetime | None:
        return min((x.next_fire_at for x in self._active() if x.next_fire_at), default=None)

    def update(self, schedule_id: UUID, **changes: Any) -> None:
        if schedule_id in self._s.schedules:
            self._s.schedules[schedule_id] = replace(self._s.schedules[schedule_id], **changes)

    def advance(self, schedule_id: UUID, expected_next: datetime, **changes: Any) -> bool:
        found = self._s.schedules.get(schedule_id)
        if found is None or found.next_fire_at != expected_next:
            return False
        self._s.schedules[schedule_id] = replace(found, **changes)
        return True

    def delete(self, schedule_id: UUID) -> None:
        self._s.schedules.pop(schedule_id, None)
        for key in [k for k in self._s.fires if k[0] == schedule_id]:
            del self._s.fires[key]

    def record_fire(self, fire: Fire) -> bool:
        key = (fire.schedule_id, fire.fire_time)
        if key in self._s.fires:
            return False
        self._s.fires[key] = fire
        return True

    def fires(self, schedule_id: UUID, *, limit: int) -> list[Fire]:
        found = [f for (sid, _), f in self._s.fires.items() if sid == schedule_id]
        return sorted(found, key=lambda f: f.fire_time, reverse=True)[:limit]


class _WorkerCredentials:
    def __init__(self, s: _State) -> None:
        self._s = s

    def put(self, credential: WorkerCredential) -> None:
        self._s.worker_credentials[credential.worker_id] = credential

    def find(self, token_hash: str) -> tuple[Worker, datetime] | None:
        for c in self._s.worker_credentials.values():
            worker = self._s.workers.get(c.worker_id)
            if c.token_hash == token_hash and worker is not None:
                return worker, c.expires_at
        return None

    def renew(self, worker_id: UUID, expires_at: datetime) -> None:
        found = self._s.worker_credentials.get(worker_id)
        if found is not None:
            self._s.worker_credentials[worker_id] = replace(found, expires_at=expires_at)


class _Transaction:
    """Every repository over one working copy of the state."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.jobs: JobRepository = _Jobs(state)
        self.attempts: AttemptRepository = _Attempts(state)
        self.events: EventRepository = _Events(state)
        self.workers: WorkerRepository = _Workers(state)
        self.tokens: TokenRepository = _Tokens(state)
        self.providers: ProviderRepository = _Providers(state)
        self.logs: LogRepository = _Logs(state)
        self.api_tokens: ApiTokenRepository = _ApiTokens(state)
        self.schedules: ScheduleRepository = _Schedules(state)
        self.gates: GateRepository = _Gates(state)
        self.worker_credentials: WorkerCredentialRepository = _WorkerCredentials(state)

    def apply(self, transition: Transition) -> Applied:
        s, t = self.state, transition
        if t.schedule is not None:
            schedule = s.schedules.get(t.schedule.schedule_id)
            if schedule is None or schedule.paused is not t.schedule.paused:
                return Applied(False)
            s.schedules[schedule.id] = replace(schedule, **t.schedule.changes)
            self.events.add(*t.events)
            return Applied(True)
        if t.provider is not None:
            provider = s.providers.get(t.provider.provider_id)
            if provider is None or t.provider.status not in (None, provider.status):
                return Applied(False)
            self.providers.update(provider.id, **t.provider.changes)
            self.events.add(*t.events)
            return Applied(True)
        if t.job is not None:
            job = s.jobs.get(t.job.job_id)
            if (
                job is None
                or job.state not in t.job.from_states
                or (t.job.attempt is not None and job.attempt != t.job.attempt)
                or (t.job.worker_id is not None and job.worker_id != t.job.worker_id)
                or (t.job.held is not None and job.held != t.job.held)
            ):
                return Applied(False)
            job = replace(job, **t.job.changes)
            if t.kind is Kind.START:  # the store sets the deadline from the job's timeout
                job = replace(job, deadline_at=_deadline(job))
            s.jobs[job.id] = job
            if t.worker is not None:
                self._worker(t.worker, job.id)
        elif t.worker is None or not self._worker(t.worker):
            return Applied(False)
        else:
            job = None
        if t.attempt is not None:
            key = (t.attempt.job_id, t.attempt.attempt_no)
            if key in s.attempts:
                s.attempts[key] = replace(s.attempts[key], **t.attempt.changes)
        if t.new_attempt is not None:
            self.attempts.add(t.new_attempt)
        events = t.events
        if t.kind is Kind.START and job is not None:
            # The store gives the start's event the job's correlation id (see start()).
            events = tuple(replace(e, correlation_id=job.correlation_id) for e in events)
        self.events.add(*events)
        return Applied(
            True,
            job if t.kind is Kind.START else None,
            has_dependents=job.has_dependents if job is not None else None,
        )

    def apply_all(self, transitions: Sequence[Transition]) -> list[Transition]:
        return [t for t in transitions if self.apply(t)]

    def _worker(self, change: WorkerChange, job_id: UUID | None = None) -> bool:
        worker = self.state.workers.get(change.worker_id)
        if worker is None:
            return False
        if change.count is WorkerCount.BUSY:
            if worker.state not in change.from_states:
                return True  # a follower: the claim stands, as in SQL
            worker = replace(
                worker,
                state=WorkerState.BUSY,
                running_jobs=worker.running_jobs + 1,
                current_job_id=job_id,
                **change.changes,
            )
        elif change.count is WorkerCount.DONE:
            last_one = worker.state is WorkerState.BUSY and worker.running_jobs <= 1
            worker = replace(
                worker,
                jobs_executed=worker.jobs_executed + 1,
                running_jobs=max(worker.running_jobs - 1, 0),
                state=WorkerState.READY if last_one else worker.state,
                current_job_id=None if last_one else worker.current_job_id,
                **change.changes,
            )
        elif change.count is WorkerCount.FOLLOW:
            if worker.state not in change.from_states:
                return False
            state = WorkerState.BUSY if worker.running_jobs > 0 else WorkerState.READY
            worker = replace(worker, state=state, **change.changes)
        else:
            if worker.state not in change.from_states:
                return False
            if (
                change.silent_since is not None
                and not worker.last_sign_of_life < change.silent_since
            ):
                return False
            worker = replace(worker, **change.changes)
        self.state.workers[worker.id] = worker
        return True


class InMemoryStore:
    """:class:`hodei.services.ports.store.Store` in memory. One unit of work at a time (a lock,
    like SQLite's one writer), on a copy that replaces the state when it commits."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.RLock()
        self.applied: list[Transition] = []  # every transition written, in order

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            tx = _Transaction(self._state.copy())
            yield tx
            self._state = tx.state

    def single_write(self) -> contextlib.AbstractContextManager[Transaction]:
        return self.transaction()

    def reading(self) -> contextlib.AbstractContextManager[Transaction]:
        return self.transaction()

    def apply(self, transition: Transition) -> Applied:
        with self.transaction() as tx:
            applied = tx.apply(transition)
        if applied:
            self.applied.append(transition)
        return applied

    @property
    def events(self) -> list[DomainEvent]:
        """Every event committed so far, in order."""
        return list(self._state.events)


@dataclass
class RecordingPublisher:
    """A :class:`hodei.services.ports.publisher.TaskPublisher` that keeps what it is given. With
    ``down``, it raises :class:`BrokerUnavailable`, like a broker outage."""

    published: list[Publication] = field(default_factory=list)
    down: bool = False
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _delivered: int = 0  # how many of ``published`` join has delivered

    def publish(self, publication: Publication) -> str:
        if self.down:
            raise BrokerUnavailable("the broker is down (RecordingPublisher.down)")
        self.published.append(publication)
        return f"task-{next(self._ids)}"

    def publish_many(
        self, publications: Sequence[Publication]
    ) -> Iterator[tuple[Publication, str]]:
        for publication in publications:
            yield publication, self.publish(publication)

    def join(
        self,
        store: Store,
        clock: Clock,
        worker_id: UUID,
        run: Callable[[Job], Outcome] = lambda _job: Outcome(exit_code=0),
    ) -> list[Job]:
        """Deliver every message published so far to ``worker_id`` (a registered worker
        row), as a worker would: claim the attempt, ``run`` it, record how it ended.
        Messages that retries or requeues publish meanwhile are delivered too; a
        delivery that loses its claim (a duplicate, a stale attempt) runs nothing.
        Returns the jobs as their attempts ended."""
        ended: list[Job] = []
        while self._delivered < len(self.published):
            message = self.published[self._delivered]
            task_id = f"task-{self._delivered}"
            self._delivered += 1
            claim = claim_attempt(
                store,
                clock,
                job_id=message.job_id,
                attempt=message.attempt,
                worker_id=worker_id,
                task_id=task_id,
            )
            if not claim.won or claim.job is None:
                continue
            outcome = run(claim.job)
            finished = finish_attempt(
                store, clock, job=claim.job, worker_id=worker_id, outcome=outcome
            )
            if finished is not None:
                ended.append(finished)
        return ended


@dataclass
class FakeLauncher:
    """A :class:`hodei.services.ports.providers.WorkerLauncher` that starts nothing and keeps the
    requests; ``fail_with`` makes every launch raise it."""

    launched: list[LaunchRequest] = field(default_factory=list)
    destroyed: list[Worker] = field(default_factory=list)
    fail_with: Exception | None = None
    ended: dict[UUID, str] = field(default_factory=dict)  # what exited() says, per worker

    def launch(self, request: LaunchRequest) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.launched.append(request)
        return f"fake:{uuid.uuid4().hex[:8]}"

    def destroy(self, worker: Worker) -> None:
        self.destroyed.append(worker)

    def exited(self, worker: Worker) -> str | None:
        return self.ended.get(worker.id)


@dataclass
class FakeWiring:
    """The ports :class:`hodei.core.Hodei` runs on, all fakes: ``Hodei(FakeWiring())``
    composes the use cases in memory. Every provider gets ``launcher``."""

    store: InMemoryStore = field(default_factory=InMemoryStore)
    clock: FixedClock = field(default_factory=FixedClock)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    launcher: FakeLauncher = field(default_factory=FakeLauncher)
    settings: Settings = field(default_factory=Settings)
    # What every provider's health check reports.
    health: HealthReport = field(default_factory=lambda: HealthReport(ProviderHealth.HEALTHY))
    # Set: the database answers again since that many seconds (after an outage).
    database_back_s: float | None = None

    def launcher_for(self, _provider: Provider) -> WorkerLauncher:
        return self.launcher

    @property
    def reads(self) -> _NoTally:
        return _NoTally()

    def probe_for(self, _provider: Provider) -> HealthProbe:
        return _Probe(self.health)

    def inspector_for(self, provider: Provider) -> InfrastructureInspector:
        raise InvalidConfiguration(f"provider {provider.name}: nothing to inspect in the fakes")

    def database_back_for(self) -> float | None:
        return self.database_back_s


class _NoTally:
    def fold_state_counts(self) -> int:
        return 0  # the in-memory store keeps no tally


@dataclass
class _Probe:
    report: HealthReport

    def check(self, timeout_s: float) -> HealthReport:
        return self.report


def _deadline(job: Job) -> datetime | None:
    timeout = job.spec.timeout_s
    if job.started_at is None or timeout is None:
        return None
    return job.started_at + timedelta(seconds=timeout)


def _implements_the_ports(
    store: InMemoryStore, publisher: RecordingPublisher, launcher: FakeLauncher, w: FakeWiring
) -> tuple[Store, TaskPublisher, WorkerLauncher, Wiring]:
    """Never called: mypy checks here that the fakes implement the ports."""
    return store, publisher, launcher, w
