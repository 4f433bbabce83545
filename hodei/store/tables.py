"""The schema (docs/architecture.md, "Data model"), as SQLAlchemy Core tables.

The alembic migrations create exactly this; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

from hodei.store.types import UTCDateTime, big_id, json_type

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


provider_configs = sa.Table(
    "provider_configs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("provider_type", sa.String(20), nullable=False),
    sa.Column("config", json_type(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("health", sa.String(20), nullable=False),
    sa.Column("health_message", sa.Text(), nullable=True),
    _ts("health_checked_at"),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("max_workers", sa.Integer(), nullable=False),
    sa.Column("min_workers", sa.Integer(), nullable=False),
    sa.Column("preferred_region", sa.String(63), nullable=True),
    sa.Column("allowed_regions", json_type(), nullable=False),
    sa.Column("labels", json_type(), nullable=False),
    sa.Column("health_check", json_type(), nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("spec", json_type(), nullable=False),
    sa.Column("provider_id", sa.Uuid(), sa.ForeignKey("provider_configs.id"), nullable=True),
    sa.Column("queue", sa.String(100), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
    sa.Column("submitted_by", sa.String(200), nullable=True),
    sa.Column("worker_id", sa.Uuid(), nullable=True),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("failure_reason", sa.String(40), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    _ts("cancel_requested_at"),
    _ts("next_attempt_at"),
    _ts("deadline_at"),
    _ts("created_at", nullable=False),
    _ts("queued_at"),
    _ts("started_at"),
    _ts("finished_at"),
    _ts("updated_at", nullable=False),
    sa.Column("secret_env", sa.Text(), nullable=True),  # Fernet token (store/secrets.py)
    # Its gates (migration 0009, services/jobs/gates.py).
    sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false()),
    _ts("hold_until"),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="5"),
    sa.Column("concurrency_key", sa.String(200), nullable=True),
    sa.Column("max_concurrency", sa.Integer(), nullable=True),
    # A job runs after this one: set in the transaction that adds the dependency, and
    # returned by the finish, so an ending that nobody waits for reads nothing more.
    sa.Column("has_dependents", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Index("ix_jobs_state_created_at", "state", "created_at"),
    sa.Index("ix_jobs_created_at", "created_at"),
    sa.Index("ix_jobs_correlation_id", "correlation_id"),
    sa.Index("ix_jobs_worker_id_state", "worker_id", "state"),
    sa.Index("ix_jobs_queue_state", "queue", "state"),
    sa.Index("ix_jobs_held_hold_until", "held", "hold_until"),
    sa.Index("ix_jobs_concurrency_key_state", "concurrency_key", "state"),
)

# A job runs after these (migration 0009). ``depends_on`` has no foreign key: purging a
# finished job must not need its dependents' rows gone first.
job_dependencies = sa.Table(
    "job_dependencies",
    metadata,
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("depends_on", sa.Uuid(), primary_key=True),
    sa.Index("ix_job_dependencies_depends_on", "depends_on"),
)

job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("attempt_no", sa.Integer(), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("worker_id", sa.Uuid(), nullable=True),
    _ts("started_at"),
    _ts("finished_at"),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("signal", sa.Integer(), nullable=True),
    sa.Column("oom_killed", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt_no", sa.Integer(), nullable=False),
    sa.Column("stream", sa.String(10), nullable=False),
    sa.Column("line", sa.Text(), nullable=False),
    _ts("ts", nullable=False),
    # The line's exact bytes where ``line`` (readable text) and a newline are not them:
    # NUL bytes, bytes that are not UTF-8, CR LF, a last line without newline.
    sa.Column("data", sa.LargeBinary(), nullable=True),
    sa.Index("ix_job_logs_job_id_id", "job_id", "id"),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("provider_id", sa.Uuid(), sa.ForeignKey("provider_configs.id"), nullable=True),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("infra_ref", sa.String(200), nullable=True),
    sa.Column("labels", json_type(), nullable=False),
    sa.Column("current_job_id", sa.Uuid(), nullable=True),
    _ts("last_heartbeat"),
    sa.Column("jobs_executed", sa.Integer(), nullable=False),
    sa.Column("running_jobs", sa.Integer(), nullable=False, server_default="0"),
    # What the last recorded heartbeat said the worker holds (migration 0005).
    sa.Column("reported_jobs", json_type(), nullable=True),
    sa.Column("pending_outcomes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("termination_reason", sa.Text(), nullable=True),
    _ts("created_at", nullable=False),
    _ts("registered_at"),
    _ts("terminated_at"),
    _ts("updated_at", nullable=False),
    sa.Index("ix_workers_state_queue", "state", "queue"),
    sa.Index("ix_workers_provider_id_state", "provider_id", "state"),
)

worker_bootstrap_tokens = sa.Table(
    "worker_bootstrap_tokens",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "worker_id", sa.Uuid(), sa.ForeignKey("workers.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("expires_at", nullable=False),
    _ts("consumed_at"),
    _ts("created_at", nullable=False),
    sa.Index("ix_worker_bootstrap_tokens_expires_at", "expires_at"),
    sa.Index("ix_worker_bootstrap_tokens_worker_id", "worker_id"),
)

domain_events = sa.Table(
    "domain_events",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("aggregate_type", sa.String(20), nullable=False),
    sa.Column("aggregate_id", sa.Uuid(), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("payload", json_type(), nullable=False),
    _ts("occurred_at", nullable=False),
    sa.Index("ix_domain_events_aggregate_id_id", "aggregate_id", "id"),
    sa.Index("ix_domain_events_correlation_id_id", "correlation_id", "id"),
    sa.Index("ix_domain_events_event_type_occurred_at", "event_type", "occurred_at"),
    sa.Index("ix_domain_events_occurred_at", "occurred_at"),
)

# Append-only +1/-1 rows written by triggers (migration 0002) on every job and worker
# state change; `hodei status` sums them instead of counting every job.
state_counts = sa.Table(
    "state_counts",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("delta", sa.BigInteger(), nullable=False),
)

# Callers of the HTTP API (migration 0006). Only the sha256 of a token is kept.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    _ts("created_at", nullable=False),
    _ts("expires_at"),
    _ts("last_used_at"),
    _ts("revoked_at"),
)

# Cron schedules (migration 0008): each tick submits a job (services/jobs/schedules.py).
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("catchup", sa.String(10), nullable=False),
    sa.Column("spec", json_type(), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False),
    _ts("next_fire_at"),
    _ts("last_fire_at"),
    sa.Column("last_job_id", sa.Uuid(), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.Index("ix_schedules_paused_next_fire_at", "paused", "next_fire_at"),
)

# One row per fire: the primary key makes a (schedule, tick) fire at most once, even
# when two schedulers race through a change of leader.
schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column(
        "schedule_id",
        sa.Uuid(),
        sa.ForeignKey("schedules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    _ts("fire_time", nullable=False),
    sa.Column("job_id", sa.Uuid(), nullable=True),
    sa.Column("trigger", sa.String(10), nullable=False),
    _ts("fired_at", nullable=False),
    sa.PrimaryKeyConstraint("schedule_id", "fire_time", name="pk_schedule_fires"),
)

# Who leads the schedulers (informational: the lock itself is a PostgreSQL advisory
# lock, or a file lock beside a SQLite database; queueing/leader.py).
scheduler_leader = sa.Table(
    "scheduler_leader",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    _ts("acquired_at", nullable=False),
    _ts("renewed_at", nullable=False),
)

# When the leading scheduler's beat last sent each maintenance task: a new leader goes
# on from there, so a change of leader runs no task twice in one interval.
beat_runs = sa.Table(
    "beat_runs",
    metadata,
    sa.Column("task", sa.String(100), primary_key=True),
    _ts("last_sent_at", nullable=False),
)

# What an API-mode worker presents to /v1/worker (migration 0010): the sha256 of its
# credential, one per worker, gone with the worker's row.
worker_credentials = sa.Table(
    "worker_credentials",
    metadata,
    sa.Column(
        "worker_id", sa.Uuid(), sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    _ts("expires_at", nullable=False),
    _ts("created_at", nullable=False),
)
