"""workers.running_jobs: how many jobs a worker is running now

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A worker's BUSY/READY state follows this count: a claim adds one and a finish takes
one away, in the same statement as the job's change. Two jobs of one worker that end
at once then update the worker row one after the other, each seeing the other's
count, so the last one leaves the worker READY without locking the row first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch mode): on SQLite, batch mode would rebuild the table
    # and drop the state-count triggers of 0002 with it.
    op.add_column(
        "workers", sa.Column("running_jobs", sa.Integer(), nullable=False, server_default="0")
    )
    # Workers that are running something now: count their RUNNING jobs.
    op.execute(
        "UPDATE workers SET running_jobs = (SELECT count(*) FROM jobs"
        " WHERE jobs.worker_id = workers.id AND jobs.state = 'RUNNING')"
        " WHERE state = 'BUSY'"
    )


def downgrade() -> None:
    op.drop_column("workers", "running_jobs")
