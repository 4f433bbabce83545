"""worker_credentials: what an API-mode worker presents to /v1/worker

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

A worker that talks to ``hodei server`` instead of the database exchanges its bootstrap
token for a credential at registration. Only its sha256 is kept, one row per worker,
deleted with the worker. It is valid until ``expires_at`` (each recorded heartbeat
moves it on) and only while the worker is live: LOST and TERMINATED end it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_credentials",
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_worker_credentials_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_worker_credentials_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("worker_credentials")
