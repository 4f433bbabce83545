"""What goes over the wire besides hodei's own records (which FastAPI serializes as
they are: Job, DomainEvent, Worker, ProviderView, SystemStatus, Diagnosis, ...)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from hodei.domain.principals import ApiToken
from hodei.domain.records import Job, LogLine, Worker
from hodei.errors import InvalidInput
from hodei.services.jobs.attempts import Outcome


class SubmitRequest(BaseModel):
    """One job: the fields of ``Client.submit`` (checked by hodei, not here, so the
    errors are the SDK's). Strict, as the SDK is: ``"priority": "9"`` or ``true`` for a
    number is refused, not converted (these models hold no datetime or UUID, which
    strict validation of parsed JSON would refuse as strings)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    command: str | list[str]
    name: str | None = None
    env: dict[str, str] | None = None
    # Sealed by the server (its HODEI_SECRET_KEY) through the same submit as a local
    # client's; never in a response, an event, an error or a log line (repr too).
    secret_env: dict[str, str] | None = Field(
        None,
        repr=False,
        description=(
            "Variables the command gets like `env`, stored encrypted and never shown:"
            " no response, event, error or log holds a value (the names are in"
            " JobCreated's `secret_env_keys`). Not for a schedule's job."
        ),
        json_schema_extra={"writeOnly": True},
    )
    working_dir: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    retry: dict[str, float] | None = None
    labels: dict[str, str] | None = None
    regions: list[str] | str | None = None
    provider: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    priority: int | None = None
    run_at: str | None = None  # ISO 8601 with a time zone
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    # Job ids; in a batch, also the index of a job of the same batch.
    after: list[int | str] | None = None
    after_any: bool | None = None


class ScheduleRequest(BaseModel):
    """A cron schedule: ``Client.add_schedule``'s arguments, the job as for a submit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    cron: str
    timezone: str = "UTC"
    catchup: str = "once"
    paused: bool = False
    job: SubmitRequest


class SubmitManyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    jobs: list[SubmitRequest] = Field(max_length=10_000)


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None = None


class LogLineOut(BaseModel):
    """A log line; ``data`` (its exact bytes) in base64, since it need not be UTF-8."""

    id: int | None
    job_id: UUID
    attempt_no: int
    stream: str
    line: str
    ts: datetime
    data_b64: str

    @classmethod
    def of(cls, line: LogLine) -> LogLineOut:
        return cls(
            id=line.id,
            job_id=line.job_id,
            attempt_no=line.attempt_no,
            stream=line.stream,
            line=line.line,
            ts=line.ts,
            data_b64=base64.b64encode(line.data).decode(),
        )

    def to_line(self) -> LogLine:
        return LogLine(
            job_id=self.job_id,
            attempt_no=self.attempt_no,
            stream=self.stream,
            line=self.line,
            ts=self.ts,
            id=self.id,
            data=base64.b64decode(self.data_b64),
        )


class LogPage(BaseModel):
    items: list[LogLineOut]
    next_after_id: int | None = None


class ProviderRequest(BaseModel):
    """``Client.add_provider``'s arguments; fields as ProviderSpec."""

    model_config = ConfigDict(strict=True)

    name: str
    provider_type: str
    fields: dict[str, Any] = Field(default_factory=dict)


class WorkerTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    provider: str = "local"
    ttl_s: float = Field(300, ge=1, le=86400)


class WorkerTokenOut(BaseModel):
    token: str
    worker_id: UUID
    queue: str
    expires_at: datetime


class ApiTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    role: str
    expires_in_s: float | None = Field(None, gt=0, le=10 * 365 * 86400)


class ApiTokenOut(BaseModel):
    """A token as listed: never its secret or its hash."""

    id: UUID
    name: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> ApiTokenOut:
        return cls(
            id=token.id,
            name=token.name,
            role=str(token.role),
            created_at=token.created_at,
            created_by=token.created_by,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class CreatedApiToken(ApiTokenOut):
    token: str  # the secret, this once


class WhoAmI(BaseModel):
    name: str
    role: str
    actor: str


def job_cursor(job: Job) -> str:
    """An opaque cursor for the page after ``job`` (created_at and id, newest first)."""
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        # In UTC, as stored; a time near year 1 or 9999 may not exist there.
        return parsed.astimezone(UTC), UUID(ident)
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidInput("not a cursor this API gave out") from None


# --- /v1/worker: what an API-mode worker sends and gets ------------------------------


class WorkerRegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=200)
    infra_ref: str | None = Field(None, max_length=200)


class WorkerRegistered(BaseModel):
    """The worker as registered and its credential: the secret, this once."""

    worker: Worker
    credential: str
    expires_at: datetime


class WorkerHeartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record: bool = Field(True, strict=True)
    jobs: list[UUID] | None = Field(None, max_length=10_000)  # what the worker holds
    pending_outcomes: int = Field(0, ge=0, strict=True)


class WorkerPulse(BaseModel):
    state: str
    running_jobs: int
    waiting_jobs: int
    keep_warm: bool
    credential_expires_at: datetime | None


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: UUID
    attempt: int = Field(ge=1, strict=True)
    task_id: str = Field(max_length=200)


class ClaimOut(BaseModel):
    """The claim; a won one carries the job and its secret_env in clear, for the
    command the worker starts (never shown anywhere else)."""

    won: bool
    reason: str
    job: Job | None = None
    secret_env: dict[str, str] = Field(default_factory=dict)


class FinishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: UUID
    attempt: int = Field(ge=1, strict=True)
    outcome: Outcome


class OutputBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[LogLineOut] = Field(max_length=100_000)


class CancelCheck(BaseModel):
    cancel_requested: bool


class WorkerBrokerLink(BaseModel):
    """What the worker's consumer says of its broker: lost (with why) or back (after
    ``down_s``)."""

    model_config = ConfigDict(extra="forbid")

    reachable: bool = Field(strict=True)
    reason: str = Field("", max_length=1000)
    down_s: float = Field(0.0, ge=0, strict=True)


class WorkerTerminate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=1000)
