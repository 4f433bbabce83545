"""Planting rows for the operators' tests: jobs, workers, tokens and providers in any
state, written through hodei's own repositories (so on PostgreSQL and SQLite alike)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hodei.domain.event_builders import job_event
from hodei.domain.events import Actor, Aggregate, DomainEvent, EventType
from hodei.domain.records import Attempt, BootstrapToken, Job, Provider, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import AttemptState, JobState, ProviderHealth, WorkerState
from hodei.sdk import Client

# (event type, old state, new state) for each step of a planted job's history
Step = tuple[str, str | None, str]
HAPPY: list[Step] = [
    ("JobCreated", None, "PENDING"),
    ("JobQueued", "PENDING", "QUEUED"),
    ("JobStarted", "QUEUED", "RUNNING"),
    ("JobSucceeded", "RUNNING", "SUCCEEDED"),
]


def now() -> datetime:
    return datetime.now(UTC)


def plant_job(
    client: Client,
    *,
    state: JobState,
    steps: Sequence[Step] = (),
    queue: str | None = "hodei.local",
    age: timedelta = timedelta(seconds=1),
    worker: Worker | None = None,
    labels: dict[str, str] | None = None,
    **fields: object,
) -> Job:
    """A job row in ``state`` with one event per step, ``age`` in the past."""
    at = now() - age
    with client.container.store.transaction() as tx:
        provider = tx.providers.get_by_name("local")
        assert provider is not None
        job = Job(
            id=uuid.uuid4(),
            name="planted",
            state=state,
            spec=JobSpec.create("true", name="planted", labels=labels or {}),
            created_at=at,
            updated_at=at,
            attempt=1,
            provider_id=provider.id if queue == provider.queue else None,
            queue=queue,
            worker_id=worker.id if worker else None,
        )
        job = replace(job, **fields)  # type: ignore[arg-type]
        tx.jobs.add(job)
        if state in (JobState.QUEUED, JobState.RUNNING):
            tx.attempts.add(Attempt(job.id, 1, AttemptState(str(state)), worker_id=job.worker_id))
        tx.events.add(*(_step_event(job, s, at) for s in steps))
    return job


def _step_event(job: Job, step: Step, at: datetime) -> DomainEvent:
    event_type, old, new = step
    return job_event(
        job,
        EventType(event_type),
        actor="sdk:planter",
        now=at,
        new_state=JobState(new),
        old_state=None if old is None else JobState(old),
    )


def add_job_event(client: Client, job: Job, step: Step, **payload: object) -> None:
    event_type, old, new = step
    event = job_event(
        job,
        EventType(event_type),
        actor="sdk:planter",
        now=now(),
        new_state=JobState(new),
        old_state=None if old is None else JobState(old),
        **payload,
    )
    with client.container.store.transaction() as tx:
        tx.events.add(event)


def plant_worker(
    client: Client,
    *,
    state: WorkerState,
    heartbeat_age: timedelta | None,
    queue: str = "hodei.local",
    age: timedelta = timedelta(minutes=10),
    infra_ref: str | None = None,
) -> Worker:
    at = now()
    with client.container.store.transaction() as tx:
        provider = tx.providers.get_by_name("local")
        worker = Worker(
            id=uuid.uuid4(),
            name="planted-worker",
            provider_id=provider.id if provider else None,
            queue=queue,
            state=state,
            created_at=at - age,
            updated_at=at - age,
            registered_at=None if state is WorkerState.PROVISIONING else at - age,
            last_heartbeat=None if heartbeat_age is None else at - heartbeat_age,
            infra_ref=infra_ref,
        )
        tx.workers.add(worker)
    return worker


def plant_token(client: Client, worker: Worker, *, expires_in: timedelta) -> BootstrapToken:
    at = now()
    token = BootstrapToken(
        id=uuid.uuid4(),
        token_hash=uuid.uuid4().hex * 2,
        worker_id=worker.id,
        expires_at=at + expires_in,
        created_at=at - timedelta(minutes=10),
    )
    with client.container.store.transaction() as tx:
        tx.tokens.add(token)
    return token


def plant_unhealthy_provider(client: Client, *, name: str, since: timedelta) -> Provider:
    at = now() - since
    provider = Provider(
        id=uuid.uuid4(),
        name=name,
        provider_type="local",
        created_at=at,
        updated_at=at,
        health=ProviderHealth.UNHEALTHY,
        health_message="connection refused",
        health_checked_at=now(),
    )
    with client.container.store.transaction() as tx:
        tx.providers.add(provider)
        tx.events.add(
            DomainEvent(
                event_type=str(EventType.PROVIDER_HEALTH_CHANGED),
                aggregate_type=str(Aggregate.PROVIDER),
                aggregate_id=provider.id,
                actor=Actor.HEALTH,
                occurred_at=at,
                payload={"old": "HEALTHY", "new": "UNHEALTHY", "message": "connection refused"},
            )
        )
    return provider
