"""jobs.secret_env: a job's secret variables, encrypted (Fernet)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

``JobSpec.secret_env`` is not in the ``spec`` column: its values are stored here only,
as one Fernet token (hodei/store/secrets.py), and opened by the worker that runs the
job. NULL for a job without secret variables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch mode), like 0003 and 0005: batch mode would rebuild
    # the table on SQLite and drop the state-count triggers of 0002 with it.
    op.add_column("jobs", sa.Column("secret_env", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "secret_env")
