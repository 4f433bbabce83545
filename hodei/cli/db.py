"""``hodei db ...``: schema migrations."""

from __future__ import annotations

import click

from hodei.settings import Settings, mask_url


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Migrate the database to the newest schema."""
    from hodei.store.engine import create_engine
    from hodei.store.migrate import upgrade as run_upgrade

    settings: Settings = ctx.find_root().obj
    revision = run_upgrade(create_engine(settings.database_url))
    click.echo(f"{mask_url(settings.database_url)} is at revision {revision}")


@db.command("current")
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the schema revision the database is at, and the newest one."""
    from hodei.store.engine import create_engine
    from hodei.store.migrate import current_revision, head_revision

    settings: Settings = ctx.find_root().obj
    now = current_revision(create_engine(settings.database_url))
    head = head_revision()
    state = "up to date" if now == head else "run `hodei db upgrade`"
    click.echo(f"current: {now or 'none'}  head: {head}  ({state})")
