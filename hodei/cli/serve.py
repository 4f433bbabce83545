"""``hodei serve``: Prometheus metrics and health probes over HTTP."""

from __future__ import annotations

import click

from hodei.settings import Settings


@click.command()
@click.option("--address", help="Address to listen on (default: HODEI_SERVE_ADDRESS or 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on (default: HODEI_SERVE_PORT or 9464; 0 picks a free one).",
)
@click.pass_context
def serve(ctx: click.Context, address: str | None, port: int | None) -> None:
    """Serve /metrics, /health, /health/ready and /health/live until stopped.

    Every metric is read from the database at scrape time, so numbers survive restarts.
    """
    from hodei.bootstrap import Container
    from hodei.logconfig import configure_logging
    from hodei.observability.server import serve as run_server
    from hodei.store import outage

    settings: Settings = ctx.find_root().obj
    # A long-running process that holds the database and broker URLs: a job of the same
    # user must not read them from it (runtime/hardening).
    from hodei.runtime import hardening

    hardening.make_undumpable()
    configure_logging(settings.log_level, settings.log_format)
    outage.DATABASE.announce()
    address = address or settings.serve_address
    port = settings.serve_port if port is None else port
    run_server(Container(settings), address, port)  # one line and exit 5 if the port is taken
