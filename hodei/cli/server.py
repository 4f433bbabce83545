"""``hodei server``: the HTTP API, with /metrics and /health, and ``hodei auth``: API tokens."""

from __future__ import annotations

from datetime import timedelta

import click

from hodei.cli.output import OUTPUT_OPTION, print_json, print_table
from hodei.cli.remote import cli_client
from hodei.settings import Settings

DEFAULT_PORT = 8080


@click.command()
@click.option(
    "--address",
    envvar="HODEI_SERVER_ADDRESS",
    help="Address to listen on (default: HODEI_SERVER_ADDRESS or 127.0.0.1).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    envvar="HODEI_SERVER_PORT",
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (HODEI_SERVER_PORT).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    envvar="HODEI_SERVER_WORKERS",
    default=1,
    show_default=True,
    help="Server processes (HODEI_SERVER_WORKERS); each is stateless.",
)
@click.pass_context
def server(ctx: click.Context, address: str | None, port: int, workers: int) -> None:
    """Serve the HTTP API (/v1/..., OpenAPI at /docs and /openapi.json), /metrics and
    /health, /health/ready, /health/live until stopped.

    Every /v1 call needs an API token (`hodei auth token create`). Terminate TLS in a
    proxy in front of it; run as many as you like behind a load balancer.
    """
    from hodei.api.server import serve_api
    from hodei.logconfig import configure_logging

    settings: Settings = ctx.find_root().obj
    from hodei.runtime import hardening

    hardening.make_undumpable()  # holds the database URL: see runtime/hardening
    configure_logging(settings.log_level, settings.log_format)
    serve_api(settings, address or "127.0.0.1", port, workers=workers)


@click.group()
def auth() -> None:
    """API tokens for `hodei server` callers."""


@auth.group()
def token() -> None:
    """Create, list and revoke API tokens (directly on the database, or through the API
    with an admin token in HODEI_API_TOKEN)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "submitter", "operator", "admin"]),
    required=True,
    help="viewer reads; submitter also submits and cancels/retries its own jobs; "
    "operator does everything about jobs, workers and providers; admin also manages tokens.",
)
@click.option(
    "--expires-in",
    help="Lifetime, e.g. 90d, 12h, 30m (default: until revoked).",
)
@OUTPUT_OPTION
@click.pass_context
def token_create(
    ctx: click.Context, name: str, role: str, expires_in: str | None, output: str
) -> None:
    """Create a token and print its secret once (only its sha256 is stored)."""
    from hodei.cli.events import parse_duration

    lifetime: timedelta | None = parse_duration(expires_in, "--expires-in") if expires_in else None
    created, secret = cli_client(ctx).create_api_token(name, role, expires_in=lifetime)
    if output == "json":
        print_json(
            {
                "token": secret,
                "name": created.name,
                "role": str(created.role),
                "expires_at": created.expires_at.isoformat() if created.expires_at else None,
            }
        )
        return
    click.echo(secret)
    until = created.expires_at.isoformat(timespec="seconds") if created.expires_at else "revoked"
    click.echo(
        f"API token {created.name} ({created.role}) valid until {until}; it is not shown "
        f"again. Use it with\n  HODEI_API_URL=http://<server>:{DEFAULT_PORT} "
        f"HODEI_API_TOKEN=<token> hodei ...",
        err=True,
    )


@token.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked tokens.")
@OUTPUT_OPTION
@click.pass_context
def token_list(ctx: click.Context, show_all: bool, output: str) -> None:
    """Tokens with their role, creator, expiry and last use (never their secrets)."""
    rows = [
        {
            "name": t.name,
            "role": str(t.role),
            "created_at": t.created_at.isoformat(timespec="seconds"),
            "created_by": t.created_by,
            "expires_at": t.expires_at.isoformat(timespec="seconds") if t.expires_at else None,
            "last_used_at": (
                t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else None
            ),
            "revoked_at": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
        }
        for t in cli_client(ctx).api_tokens(include_revoked=show_all)
    ]
    if output == "json":
        print_json(rows)
        return
    print_table(rows, ["name", "role", "created_by", "expires_at", "last_used_at", "revoked_at"])


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token: its next request is refused (401)."""
    revoked = cli_client(ctx).revoke_api_token(name)
    click.echo(f"API token {revoked.name} revoked")
