"""JSON-ready forms of jobs, events and providers, and ``K=V`` parsing: what the CLI
prints with ``--output json`` and reads from repeated options."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hodei.domain.events import DomainEvent
from hodei.domain.records import Job
from hodei.errors import InvalidInput
from hodei.services.fleet.provider_registry import ProviderView


def job_to_dict(job: Job) -> dict[str, Any]:
    """The JSON form of a job used by the CLI and ``--output json``."""
    return {
        "id": str(job.id),
        "name": job.name,
        "state": str(job.state),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "exit_code": job.exit_code,
        "failure_reason": job.failure_reason,
        "error": job.error,
        "queue": job.queue,
        "correlation_id": job.correlation_id,
        "idempotency_key": job.idempotency_key,
        "submitted_by": job.submitted_by,
        "worker_id": str(job.worker_id) if job.worker_id else None,
        "command": job.spec.command_text,
        "labels": dict(job.spec.labels),
        "created_at": _iso(job.created_at),
        "queued_at": _iso(job.queued_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "next_attempt_at": _iso(job.next_attempt_at),
        "duration_ms": job.duration_ms,
        "priority": job.priority,
        "held": job.held,
        "run_at": _iso(job.spec.run_at),
        "after": [str(a) for a in job.spec.after],
        "after_any": job.spec.after_any,
        "concurrency_key": job.concurrency_key,
        "max_concurrency": job.max_concurrency,
    }


def provider_to_dict(view: ProviderView) -> dict[str, Any]:
    """The JSON form of a provider used by ``hodei provider ... --output json``."""
    p = view.provider
    return {
        "id": str(p.id),
        "name": p.name,
        "type": p.provider_type,
        "status": str(p.status),
        "health": str(p.health),
        "health_message": p.health_message,
        "health_checked_at": _iso(p.health_checked_at),
        "priority": p.priority,
        "live_workers": view.live_workers,
        "max_workers": p.max_workers,
        "min_workers": p.min_workers,
        "labels": dict(p.labels),
        "preferred_region": p.preferred_region,
        "allowed_regions": list(p.allowed_regions),
        "health_check": dict(p.health_check),
        "queue": p.queue,
        "config": dict(p.config),
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at),
    }


def event_to_dict(event: DomainEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "event_id": str(event.event_id),
        "occurred_at": _iso(event.occurred_at),
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": str(event.aggregate_id),
        "actor": event.actor,
        "correlation_id": event.correlation_id,
        "payload": event.payload,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def mapping_from_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``K=V`` strings to a dict, with a one-line error naming the bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} must look like KEY=VALUE, got {pair!r}")
        out[key] = value
    return out
