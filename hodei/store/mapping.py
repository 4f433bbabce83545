"""Rows to domain records and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain.events import DomainEvent
from hodei.domain.records import Attempt, BootstrapToken, Job, LogLine, Provider, Worker
from hodei.domain.specs import JobSpec, RetryPolicy
from hodei.domain.states import (
    AttemptState,
    JobState,
    ProviderHealth,
    ProviderStatus,
    WorkerState,
)


def spec_from_json(data: Mapping[str, Any]) -> JobSpec:
    """Rebuild a stored spec without re-validating it (it was validated on submit)."""
    command = data["command"]
    return JobSpec(
        name=data["name"],
        command=command if isinstance(command, str) else tuple(command),
        env=dict(data.get("env") or {}),
        working_dir=data.get("working_dir"),
        timeout_s=int(data.get("timeout_s", 3600)),
        max_attempts=int(data.get("max_attempts", 1)),
        retry=RetryPolicy(**(data.get("retry") or {})),
        labels=dict(data.get("labels") or {}),
        regions=tuple(data.get("regions") or ()),
        provider=data.get("provider"),
        correlation_id=data.get("correlation_id"),
        idempotency_key=data.get("idempotency_key"),
        priority=int(data.get("priority", 5)),
        run_at=datetime.fromisoformat(data["run_at"]) if data.get("run_at") else None,
        concurrency_key=data.get("concurrency_key"),
        max_concurrency=data.get("max_concurrency"),
        after=tuple(a if isinstance(a, int) else UUID(str(a)) for a in data.get("after") or ()),
        after_any=bool(data.get("after_any", False)),
    )


def job_to_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "state": str(job.state),
        "spec": job.spec.to_dict(),
        "provider_id": job.provider_id,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "correlation_id": job.correlation_id,
        "idempotency_key": job.idempotency_key,
        "submitted_by": job.submitted_by,
        "worker_id": job.worker_id,
        "exit_code": job.exit_code,
        "failure_reason": job.failure_reason,
        "error": job.error,
        "cancel_requested_at": job.cancel_requested_at,
        "next_attempt_at": job.next_attempt_at,
        "deadline_at": job.deadline_at,
        "created_at": job.created_at,
        "queued_at": job.queued_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        # Sealed by the repository (never the clear values from spec.secret_env).
        "secret_env": job.secret_env_sealed,
        "held": job.held,
        "hold_until": job.hold_until,
        "priority": job.priority,
        "concurrency_key": job.concurrency_key,
        "max_concurrency": job.max_concurrency,
        "has_dependents": job.has_dependents,
    }


def job_from_row(row: Mapping[Any, Any]) -> Job:
    data = dict(row)
    data["state"] = JobState(data["state"])
    data["spec"] = spec_from_json(data["spec"])
    data["secret_env_sealed"] = data.pop("secret_env", None)
    return Job(**data)


def attempt_from_row(row: Mapping[Any, Any]) -> Attempt:
    data = dict(row)
    data["state"] = AttemptState(data["state"])
    return Attempt(**data)


def worker_from_row(row: Mapping[Any, Any]) -> Worker:
    data = dict(row)
    data["state"] = WorkerState(data["state"])
    data["labels"] = dict(data.get("labels") or {})
    reported = data.get("reported_jobs")
    data["reported_jobs"] = None if reported is None else tuple(UUID(str(j)) for j in reported)
    return Worker(**data)


def worker_to_row(worker: Worker) -> dict[str, Any]:
    return {
        "id": worker.id,
        "name": worker.name,
        "provider_id": worker.provider_id,
        "queue": worker.queue,
        "state": str(worker.state),
        "infra_ref": worker.infra_ref,
        "labels": dict(worker.labels),
        "current_job_id": worker.current_job_id,
        "last_heartbeat": worker.last_heartbeat,
        "jobs_executed": worker.jobs_executed,
        "running_jobs": worker.running_jobs,
        "reported_jobs": (
            None if worker.reported_jobs is None else [str(j) for j in worker.reported_jobs]
        ),
        "pending_outcomes": worker.pending_outcomes,
        "termination_reason": worker.termination_reason,
        "created_at": worker.created_at,
        "registered_at": worker.registered_at,
        "terminated_at": worker.terminated_at,
        "updated_at": worker.updated_at,
    }


def token_from_row(row: Mapping[Any, Any]) -> BootstrapToken:
    return BootstrapToken(**dict(row))


def provider_from_row(row: Mapping[Any, Any]) -> Provider:
    data = dict(row)
    data["status"] = ProviderStatus(data["status"])
    data["health"] = ProviderHealth(data["health"])
    data["allowed_regions"] = tuple(data.get("allowed_regions") or ())
    data["labels"] = dict(data.get("labels") or {})
    data["config"] = dict(data.get("config") or {})
    data["health_check"] = dict(data.get("health_check") or {})
    return Provider(**data)


def provider_to_row(provider: Provider) -> dict[str, Any]:
    return {
        "id": provider.id,
        "name": provider.name,
        "provider_type": provider.provider_type,
        "config": dict(provider.config),
        "status": str(provider.status),
        "health": str(provider.health),
        "health_message": provider.health_message,
        "health_checked_at": provider.health_checked_at,
        "priority": provider.priority,
        "max_workers": provider.max_workers,
        "min_workers": provider.min_workers,
        "preferred_region": provider.preferred_region,
        "allowed_regions": list(provider.allowed_regions),
        "labels": dict(provider.labels),
        "health_check": dict(provider.health_check),
        "created_at": provider.created_at,
        "updated_at": provider.updated_at,
    }


def attempt_to_row(attempt: Attempt) -> dict[str, Any]:
    return {
        "job_id": attempt.job_id,
        "attempt_no": attempt.attempt_no,
        "state": str(attempt.state),
        "task_id": attempt.task_id,
        "worker_id": attempt.worker_id,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "exit_code": attempt.exit_code,
        "signal": attempt.signal,
        "oom_killed": attempt.oom_killed,
        "error": attempt.error,
    }


def event_to_row(event: DomainEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "correlation_id": event.correlation_id,
        "actor": event.actor,
        "payload": event.payload,
        "occurred_at": event.occurred_at,
    }


def event_from_row(row: Mapping[Any, Any]) -> DomainEvent:
    return DomainEvent(**dict(row))


def log_from_row(row: Mapping[Any, Any]) -> LogLine:
    values = dict(row)
    # NULL: the line's bytes are its text and a newline (most lines), see log_to_row.
    data = values.pop("data") or b""
    return LogLine(**values, data=data)


def log_to_row(line: LogLine) -> dict[str, Any]:
    return {
        "job_id": line.job_id,
        "attempt_no": line.attempt_no,
        "stream": line.stream,
        "line": line.line,
        "ts": line.ts,
        # Only a line whose text does not give back its bytes stores them.
        "data": None if line.data == line.plain_data else line.data,
    }


def _enum_value(value: Any) -> Any:
    return str(value) if isinstance(value, JobState | WorkerState | AttemptState) else value


def normalise_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Enum members to their stored string form."""
    return {k: _enum_value(v) for k, v in changes.items()}
