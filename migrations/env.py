"""Alembic environment. hodei runs it through ``hodei db upgrade`` (store/migrate.py)."""

from __future__ import annotations

from alembic import context

from hodei.store.tables import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `hodei db upgrade`, which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
