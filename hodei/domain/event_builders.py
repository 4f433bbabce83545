"""Building the events written next to each state change (see hodei.domain.transitions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain.events import Aggregate, DomainEvent, EventType
from hodei.domain.records import Job, Provider, Worker
from hodei.domain.states import JobState, ProviderHealth, ProviderStatus, WorkerState


def job_event(
    job: Job,
    event_type: EventType,
    *,
    actor: str,
    now: datetime,
    new_state: JobState | None = None,
    **payload: Any,
) -> DomainEvent:
    """An event on a job's timeline; a state change carries old_state/new_state."""
    if new_state is not None:
        payload.setdefault("old_state", job.state)
    return job_event_for(
        job.id, job.correlation_id, event_type, actor=actor, now=now, new_state=new_state,
        **payload,
    )  # fmt: skip


def job_event_for(
    job_id: UUID,
    correlation_id: str | None,
    event_type: EventType,
    *,
    actor: str,
    now: datetime,
    new_state: JobState | None = None,
    **payload: Any,
) -> DomainEvent:
    """:func:`job_event` without the job at hand (a state change must name old_state)."""
    body: dict[str, Any] = {}
    if new_state is not None:
        old_state = payload.pop("old_state")
        body["old_state"] = None if old_state is None else str(old_state)
        body["new_state"] = str(new_state)
    body.update(payload)
    return DomainEvent(
        event_type=str(event_type),
        aggregate_type=str(Aggregate.JOB),
        aggregate_id=job_id,
        actor=actor,
        occurred_at=now,
        payload=_json_ready(body),
        correlation_id=correlation_id,
    )


def worker_event(
    worker: Worker,
    event_type: EventType,
    *,
    actor: str,
    now: datetime,
    new_state: WorkerState | None = None,
    **payload: Any,
) -> DomainEvent:
    """An event on a worker's timeline."""
    body: dict[str, Any] = {"queue": worker.queue}
    if new_state is not None:
        body["old_state"] = str(worker.state)
        body["new_state"] = str(new_state)
    body.update(payload)
    return DomainEvent(
        event_type=str(event_type),
        aggregate_type=str(Aggregate.WORKER),
        aggregate_id=worker.id,
        actor=actor,
        occurred_at=now,
        payload=_json_ready(body),
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def provider_event(
    provider: Provider, event_type: EventType, actor: str, now: datetime, **payload: Any
) -> DomainEvent:
    """An event on a provider's timeline; the payload names it (its name outlives it)."""
    return DomainEvent(
        event_type=str(event_type),
        aggregate_type=str(Aggregate.PROVIDER),
        aggregate_id=provider.id,
        actor=actor,
        occurred_at=now,
        payload={"provider": provider.name, **plain(payload)},
    )


def token_event(
    token_id: UUID, event_type: EventType, *, actor: str, now: datetime, **payload: Any
) -> DomainEvent:
    """An event on a bootstrap token's timeline."""
    return DomainEvent(
        event_type=str(event_type),
        aggregate_type=str(Aggregate.TOKEN),
        aggregate_id=token_id,
        actor=actor,
        occurred_at=now,
        payload=_json_ready(payload),
    )


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: mappings, lists, a provider's status and health."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, ProviderStatus | ProviderHealth):
        return str(value)
    return value
