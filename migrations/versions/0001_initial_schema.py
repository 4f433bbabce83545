"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LOCAL_PROVIDER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domain_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("aggregate_type", sa.String(length=20), nullable=False),
        sa.Column("aggregate_id", sa.Uuid(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_domain_events_event_id")),
    )
    op.create_index(
        "ix_domain_events_aggregate_id_id", "domain_events", ["aggregate_id", "id"], unique=False
    )
    op.create_index(
        "ix_domain_events_correlation_id_id",
        "domain_events",
        ["correlation_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_domain_events_event_type_occurred_at",
        "domain_events",
        ["event_type", "occurred_at"],
        unique=False,
    )
    op.create_index("ix_domain_events_occurred_at", "domain_events", ["occurred_at"], unique=False)

    op.create_table(
        "provider_configs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("provider_type", sa.String(length=20), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("health", sa.String(length=20), nullable=False),
        sa.Column("health_message", sa.Text(), nullable=True),
        sa.Column("health_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("max_workers", sa.Integer(), nullable=False),
        sa.Column("min_workers", sa.Integer(), nullable=False),
        sa.Column("preferred_region", sa.String(length=63), nullable=True),
        sa.Column("allowed_regions", JSON, nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("health_check", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_configs")),
        sa.UniqueConstraint("name", name=op.f("uq_provider_configs_name")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("submitted_by", sa.String(length=200), nullable=True),
        sa.Column("worker_id", sa.Uuid(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider_configs.id"],
            name=op.f("fk_jobs_provider_id_provider_configs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index("ix_jobs_correlation_id", "jobs", ["correlation_id"], unique=False)
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"], unique=False)
    op.create_index("ix_jobs_queue_state", "jobs", ["queue", "state"], unique=False)
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"], unique=False)
    op.create_index("ix_jobs_worker_id_state", "jobs", ["worker_id", "state"], unique=False)

    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("infra_ref", sa.String(length=200), nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("current_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("jobs_executed", sa.Integer(), nullable=False),
        sa.Column("termination_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider_configs.id"],
            name=op.f("fk_workers_provider_id_provider_configs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(
        "ix_workers_provider_id_state", "workers", ["provider_id", "state"], unique=False
    )
    op.create_index("ix_workers_state_queue", "workers", ["state", "queue"], unique=False)

    op.create_table(
        "job_attempts",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("worker_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("signal", sa.Integer(), nullable=True),
        sa.Column("oom_killed", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_attempts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "attempt_no", name=op.f("pk_job_attempts")),
    )
    op.create_table(
        "job_logs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=10), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_logs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_logs")),
    )
    op.create_index("ix_job_logs_job_id_id", "job_logs", ["job_id", "id"], unique=False)

    op.create_table(
        "worker_bootstrap_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_worker_bootstrap_tokens_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_bootstrap_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_worker_bootstrap_tokens_token_hash")),
    )
    op.create_index(
        "ix_worker_bootstrap_tokens_expires_at",
        "worker_bootstrap_tokens",
        ["expires_at"],
        unique=False,
    )

    _create_views()
    _create_notify_trigger()
    _seed_local_provider()


def _create_views() -> None:
    # Operator views, for the SQL in docs/troubleshooting.md.
    op.execute(
        "CREATE VIEW job_queue AS "
        "SELECT j.id AS job_id, j.queued_at AS enqueued_at, j.queue AS queue, "
        "p.name AS provider, j.attempt AS attempt "
        "FROM jobs j LEFT JOIN provider_configs p ON p.id = j.provider_id "
        "WHERE j.state = 'QUEUED'"
    )
    op.execute(
        "CREATE VIEW audit_logs AS "
        "SELECT id, event_id, occurred_at, event_type, aggregate_type, aggregate_id, "
        "correlation_id, actor, payload FROM domain_events"
    )


def _create_notify_trigger() -> None:
    # One NOTIFY per inserting statement, inside the same transaction, carrying the
    # highest new event id; followers read by id cursor, so the payload is only a hint.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION hodei_notify_events() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('hodei_events', (SELECT max(id)::text FROM new_events));
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER domain_events_notify AFTER INSERT ON domain_events "
        "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT "
        "EXECUTE FUNCTION hodei_notify_events()"
    )


def _seed_local_provider() -> None:
    # The embedded default works with no setup: a `local` provider exists from the start.
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # SQLite keeps naive UTC
    providers = sa.table(
        "provider_configs",
        sa.column("id", sa.Uuid()),
        *(sa.column(c, sa.String()) for c in ("name", "provider_type", "status", "health")),
        *(sa.column(c, sa.Integer()) for c in ("priority", "max_workers", "min_workers")),
        *(sa.column(c, JSON) for c in ("config", "allowed_regions", "labels", "health_check")),
        *(sa.column(c, sa.DateTime(timezone=True)) for c in ("created_at", "updated_at")),
    )
    op.bulk_insert(
        providers,
        [
            {
                "id": LOCAL_PROVIDER_ID,
                "name": "local",
                "provider_type": "local",
                "config": {},
                "status": "ACTIVE",
                "health": "HEALTHY",
                "priority": 0,
                "max_workers": 2,
                "min_workers": 0,
                "allowed_regions": [],
                "labels": {},
                "health_check": {"timeout_s": 5, "interval_s": 30},
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS audit_logs")
    op.execute("DROP VIEW IF EXISTS job_queue")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS domain_events_notify ON domain_events")
        op.execute("DROP FUNCTION IF EXISTS hodei_notify_events()")
    op.drop_index("ix_worker_bootstrap_tokens_expires_at", table_name="worker_bootstrap_tokens")

    op.drop_table("worker_bootstrap_tokens")
    op.drop_index("ix_job_logs_job_id_id", table_name="job_logs")

    op.drop_table("job_logs")
    op.drop_table("job_attempts")
    op.drop_index("ix_workers_state_queue", table_name="workers")
    op.drop_index("ix_workers_provider_id_state", table_name="workers")

    op.drop_table("workers")
    op.drop_index("ix_jobs_worker_id_state", table_name="jobs")
    op.drop_index("ix_jobs_state_created_at", table_name="jobs")
    op.drop_index("ix_jobs_queue_state", table_name="jobs")
    op.drop_index("ix_jobs_created_at", table_name="jobs")
    op.drop_index("ix_jobs_correlation_id", table_name="jobs")

    op.drop_table("jobs")
    op.drop_table("provider_configs")
    op.drop_index("ix_domain_events_occurred_at", table_name="domain_events")
    op.drop_index("ix_domain_events_event_type_occurred_at", table_name="domain_events")
    op.drop_index("ix_domain_events_correlation_id_id", table_name="domain_events")
    op.drop_index("ix_domain_events_aggregate_id_id", table_name="domain_events")

    op.drop_table("domain_events")
