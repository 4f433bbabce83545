"""job_logs.data: the exact bytes of an output line that its text cannot hold

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

PostgreSQL's text cannot hold a NUL byte, and text decoded from bytes that are not
UTF-8 cannot give them back. ``line`` stays readable text (U+FFFD for those bytes);
``data`` keeps the line's bytes, newline included, only where ``line`` and a newline
in UTF-8 are not them, so most rows store nothing more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch mode), which keeps 0002's triggers on SQLite.
    op.add_column("job_logs", sa.Column("data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("job_logs", "data")
