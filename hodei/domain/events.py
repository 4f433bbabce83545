"""Domain events: the audit timeline. Every state change writes one in its transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class EventType(StrEnum):
    """Every event type hodei records (docs/architecture.md, "One job, end to end")."""

    JOB_CREATED = "JobCreated"
    JOB_QUEUED = "JobQueued"
    JOB_PUBLISH_FAILED = "JobPublishFailed"
    JOB_UNSCHEDULABLE = "JobUnschedulable"
    JOB_STARTED = "JobStarted"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_TIMED_OUT = "JobTimedOut"
    JOB_RETRY_SCHEDULED = "JobRetryScheduled"
    JOB_CANCEL_REQUESTED = "JobCancelRequested"
    JOB_CANCELLED = "JobCancelled"
    JOB_REQUEUED = "JobRequeued"
    JOB_REPUBLISHED = "JobRepublished"
    JOB_DUPLICATE_DROPPED = "JobDuplicateDropped"
    JOB_HELD = "JobHeld"
    JOB_RELEASED = "JobReleased"
    WORKER_PROVISIONING = "WorkerProvisioning"
    WORKER_PROVISION_FAILED = "WorkerProvisionFailed"
    WORKER_REGISTERED = "WorkerRegistered"
    WORKER_READY = "WorkerReady"
    WORKER_DEGRADED = "WorkerDegraded"  # it cannot reach its broker
    WORKER_RECONNECTED = "WorkerReconnected"  # it reaches its broker again
    WORKER_DRAINING = "WorkerDraining"
    WORKER_TERMINATED = "WorkerTerminated"
    WORKER_LOST = "WorkerLost"
    WORKER_REQUEST_REFUSED = "WorkerRequestRefused"  # a worker API call it may not make
    INFRASTRUCTURE_EVENT = "InfrastructureEvent"
    TOKEN_ISSUED = "TokenIssued"
    TOKEN_CONSUMED = "TokenConsumed"
    TOKEN_REJECTED = "TokenRejected"
    TOKEN_EXPIRED = "TokenExpired"
    PROVIDER_REGISTERED = "ProviderRegistered"
    PROVIDER_UPDATED = "ProviderUpdated"
    PROVIDER_STATUS_CHANGED = "ProviderStatusChanged"
    PROVIDER_HEALTH_CHANGED = "ProviderHealthChanged"
    PROVIDER_REMOVED = "ProviderRemoved"
    API_TOKEN_CREATED = "ApiTokenCreated"
    API_TOKEN_REVOKED = "ApiTokenRevoked"
    SCHEDULE_CREATED = "ScheduleCreated"
    SCHEDULE_FIRED = "ScheduleFired"
    SCHEDULE_SKIPPED = "ScheduleSkipped"
    SCHEDULE_FAILED = "ScheduleFailed"
    SCHEDULE_PAUSED = "SchedulePaused"
    SCHEDULE_RESUMED = "ScheduleResumed"
    SCHEDULE_REMOVED = "ScheduleRemoved"


class Aggregate(StrEnum):
    JOB = "job"
    WORKER = "worker"
    TOKEN = "token"
    PROVIDER = "provider"
    API_TOKEN = "api_token"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class DomainEvent:
    """One fact on the timeline. ``id`` is assigned by the store (the global order)."""

    event_type: str
    aggregate_type: str
    aggregate_id: UUID
    actor: str
    occurred_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    event_id: UUID = field(default_factory=uuid.uuid4)
    id: int | None = None


class Actor:
    """Who caused an event: ``cli:<user>``, ``worker:<id>``, ``system:<part>``."""

    DISPATCHER = "system:dispatcher"
    PROVISIONER = "system:provisioner"
    REAPER = "system:reaper"
    HEALTH = "system:health"
    SCHEDULER = "system:scheduler"

    @staticmethod
    def worker(worker_id: UUID | str) -> str:
        return f"worker:{worker_id}"

    @staticmethod
    def user(interface: str, user: str) -> str:
        return f"{interface}:{user}"
