"""``hodei flower``: Flower, the live Celery console, on hodei's app and broker."""

from __future__ import annotations

import click

from hodei.settings import Settings


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything beyond localhost needs HODEI_FLOWER_BASIC_AUTH.",
)
@click.pass_context
def flower(ctx: click.Context, port: int, address: str) -> None:
    """Run Flower on hodei's broker: live workers and tasks.

    Flower is the live console; a job's state and history are hodei's own
    (`hodei job show`, `hodei job timeline`).
    """
    from hodei.bootstrap import Container
    from hodei.logconfig import configure_logging
    from hodei.observability.dashboard import check_exposure, parse_basic_auth, run_flower

    settings: Settings = ctx.find_root().obj
    # A long-running process that holds the database and broker URLs: a job of the same
    # user must not read them from it (runtime/hardening).
    from hodei.runtime import hardening

    hardening.make_undumpable()
    credentials = parse_basic_auth(settings.flower_basic_auth)
    check_exposure(address, credentials)
    configure_logging(settings.log_level, settings.log_format)
    run_flower(Container(settings).app, address, port, credentials)
