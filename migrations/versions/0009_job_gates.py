"""jobs' gates: held, hold_until, priority, concurrency_key, max_concurrency, has_dependents; job_dependencies

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

A job may wait before it is published (docs/architecture.md, "Gates"): until its due
time (``hold_until``), until the jobs it runs after have ended (``job_dependencies``),
or for a slot of its concurrency key. ``held`` says it still waits; ``priority`` orders
the waiting jobs of one queue (also on the broker). Existing jobs are not held and have
the default priority 5. ``has_dependents`` says a job runs after this one, so the end
of a job that nobody waits for (and that has no key) reads nothing more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch mode), like 0003: batch mode would rebuild the table on
    # SQLite and drop the state-count triggers of 0002 with it.
    op.add_column(
        "jobs", sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("jobs", sa.Column("hold_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "jobs", sa.Column("priority", sa.Integer(), nullable=False, server_default="5")
    )
    op.add_column("jobs", sa.Column("concurrency_key", sa.String(200), nullable=True))
    op.add_column("jobs", sa.Column("max_concurrency", sa.Integer(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("has_dependents", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_jobs_held_hold_until", "jobs", ["held", "hold_until"])
    op.create_index("ix_jobs_concurrency_key_state", "jobs", ["concurrency_key", "state"])
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("depends_on", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name="fk_job_dependencies_job_id_jobs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "depends_on", name="pk_job_dependencies"),
    )
    op.create_index("ix_job_dependencies_depends_on", "job_dependencies", ["depends_on"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_depends_on", table_name="job_dependencies")
    op.drop_table("job_dependencies")
    op.drop_index("ix_jobs_concurrency_key_state", table_name="jobs")
    op.drop_index("ix_jobs_held_hold_until", table_name="jobs")
    for column in ("has_dependents", "max_concurrency", "concurrency_key", "priority", "hold_until", "held"):
        op.drop_column("jobs", column)
