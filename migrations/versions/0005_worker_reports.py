"""workers.reported_jobs, workers.pending_outcomes: what a worker's heartbeat says it holds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Every recorded heartbeat stores the jobs the worker holds (a command running, or an
outcome it could not write yet, e.g. during a database outage) and how many outcomes
wait. ``hodei doctor`` flags a RUNNING job its worker does not report; NULL means the
worker never reported (it predates this revision), and is not judged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch mode), like 0003: batch mode would rebuild the table on
    # SQLite and drop the state-count triggers of 0002 with it.
    op.add_column("workers", sa.Column("reported_jobs", JSON, nullable=True))
    op.add_column(
        "workers",
        sa.Column("pending_outcomes", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("workers", "pending_outcomes")
    op.drop_column("workers", "reported_jobs")
