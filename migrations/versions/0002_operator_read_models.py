"""operator read models: state counts, token index, audit views

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

``hodei status`` must not count a million jobs on every call. Triggers append a
+1/-1 row to ``state_counts`` for every job or worker state change (append-only, so
concurrent transactions never wait on a hot counter row); readers sum the table and
fold it back to one row per state now and then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COUNTED = (("jobs", "job"), ("workers", "worker"))


def upgrade() -> None:
    op.create_table(
        "state_counts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_counts")),
    )
    op.create_index(
        "ix_worker_bootstrap_tokens_worker_id",
        "worker_bootstrap_tokens",
        ["worker_id"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()
    # Triggers first, then the backfill, in one transaction: on PostgreSQL CREATE
    # TRIGGER locks the table against writes until commit, so nothing is missed.
    for table, entity in _COUNTED:
        op.execute(
            f"INSERT INTO state_counts (entity, state, delta) "
            f"SELECT '{entity}', state, count(*) FROM {table} GROUP BY state"
        )
    _replace_views()


def _postgres_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION hodei_count_inserted() RETURNS trigger AS $$
        BEGIN
            INSERT INTO state_counts (entity, state, delta)
            SELECT TG_ARGV[0], state, count(*) FROM new_rows GROUP BY state;
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE FUNCTION hodei_count_deleted() RETURNS trigger AS $$
        BEGIN
            INSERT INTO state_counts (entity, state, delta)
            SELECT TG_ARGV[0], state, -count(*) FROM old_rows GROUP BY state;
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE FUNCTION hodei_count_changed() RETURNS trigger AS $$
        BEGIN
            INSERT INTO state_counts (entity, state, delta)
            VALUES (TG_ARGV[0], OLD.state, -1), (TG_ARGV[0], NEW.state, 1);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    for table, entity in _COUNTED:
        # Statement triggers for bulk inserts and purges (one row per state, not per job).
        op.execute(
            f"CREATE TRIGGER {table}_count_inserted AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION hodei_count_inserted('{entity}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_deleted AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION hodei_count_deleted('{entity}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_changed AFTER UPDATE OF state ON {table} "
            f"FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) "
            f"EXECUTE FUNCTION hodei_count_changed('{entity}')"
        )


def _sqlite_triggers() -> None:
    for table, entity in _COUNTED:
        op.execute(
            f"CREATE TRIGGER {table}_count_inserted AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO state_counts (entity, state, delta) VALUES ('{entity}', NEW.state, 1); "
            f"END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_deleted AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO state_counts (entity, state, delta) VALUES ('{entity}', OLD.state, -1); "
            f"END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_changed AFTER UPDATE OF state ON {table} "
            f"WHEN OLD.state IS NOT NEW.state BEGIN "
            f"INSERT INTO state_counts (entity, state, delta) VALUES ('{entity}', OLD.state, -1); "
            f"INSERT INTO state_counts (entity, state, delta) VALUES ('{entity}', NEW.state, 1); "
            f"END"
        )


def _replace_views() -> None:
    # audit_logs gains job_id, so operators' `WHERE job_id = '...'` works; job_events
    # is the per-job view docs/troubleshooting.md queries by that name.
    op.execute("DROP VIEW IF EXISTS audit_logs")
    op.execute(
        "CREATE VIEW audit_logs AS "
        "SELECT id, event_id, occurred_at, event_type, aggregate_type, aggregate_id, "
        "correlation_id, actor, payload, "
        "CASE WHEN aggregate_type = 'job' THEN aggregate_id END AS job_id "
        "FROM domain_events"
    )
    op.execute(
        "CREATE VIEW job_events AS "
        "SELECT id, occurred_at, event_type, aggregate_id AS job_id, correlation_id, actor, "
        "payload FROM domain_events WHERE aggregate_type = 'job'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS job_events")
    op.execute("DROP VIEW IF EXISTS audit_logs")
    op.execute(
        "CREATE VIEW audit_logs AS "
        "SELECT id, event_id, occurred_at, event_type, aggregate_type, aggregate_id, "
        "correlation_id, actor, payload FROM domain_events"
    )
    for table, _entity in _COUNTED:
        for suffix in ("inserted", "deleted", "changed"):
            if op.get_bind().dialect.name == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{suffix} ON {table}")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{suffix}")
    if op.get_bind().dialect.name == "postgresql":
        for name in ("inserted", "deleted", "changed"):
            op.execute(f"DROP FUNCTION IF EXISTS hodei_count_{name}()")
    op.drop_index("ix_worker_bootstrap_tokens_worker_id", table_name="worker_bootstrap_tokens")
    op.drop_table("state_counts")
