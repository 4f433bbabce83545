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
    from hodei.bootstrap import Container
    from hodei.store.migrate import upgrade as run_upgrade

    settings: Settings = ctx.find_root().obj
    revision = run_upgrade(Container(settings).engine)
    click.echo(f"{mask_url(settings.database_url)} is at revision {revision}")


@db.command("current")
@click.option("--check", is_flag=True, help="Print nothing when all is well: only the exit code.")
@click.pass_context
def current(ctx: click.Context, check: bool) -> None:
    """Print the schema revision the database is at and the newest one, and compare the
    live tables with the ones this hodei expects.

    Exits 0 when the database is at the newest revision and its tables match, 6 when it
    needs `hodei db upgrade` or its tables differ (each difference is named).
    """
    from hodei.bootstrap import Container
    from hodei.errors import SchemaMismatch, SchemaOutOfDate
    from hodei.store.migrate import current_revision, head_revision, revision_gap
    from hodei.store.schema_check import schema_differences

    settings: Settings = ctx.find_root().obj
    engine = Container(settings).engine
    now = current_revision(engine)
    head = head_revision()
    if not check:
        click.echo(f"database: {mask_url(settings.database_url)}")
        click.echo(f"current: {now or 'none'}  head: {head}")
    if now != head:
        raise SchemaOutOfDate(revision_gap(now, head))
    differences = schema_differences(engine)
    if differences:
        raise SchemaMismatch(
            f"the database is at revision {head} but its tables differ: "
            + "; ".join(differences)
            + " (undo the change made by hand, or restore a backup)"
        )
    if not check:
        click.echo("up to date: the tables match")
