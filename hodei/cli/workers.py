"""``hodei worker ...``: tokens, starting a worker, listing and draining workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import click

from hodei.bootstrap import Container
from hodei.cli.output import OUTPUT_OPTION, print_fields, print_json, print_table
from hodei.cli.params import FiniteFloat
from hodei.cli.remote import cli_client
from hodei.domain.records import Worker
from hodei.domain.states import WorkerState
from hodei.errors import InvalidInput
from hodei.settings import Settings


def _container(ctx: click.Context) -> Container:
    settings: Settings = ctx.find_root().obj
    return Container(settings)


@click.group()
def worker() -> None:
    """Start, list and drain workers; issue bootstrap tokens."""


@worker.group()
def token() -> None:
    """Single-use bootstrap tokens for workers started by hand."""


@token.command("create")
@click.option("--provider", default="local", show_default=True)
@click.option(
    "--ttl",
    type=FiniteFloat(1, 86400),
    default=300,
    show_default=True,
    help="Seconds the token stays valid.",
)
@OUTPUT_OPTION
@click.pass_context
def token_create(ctx: click.Context, provider: str, ttl: float, output: str) -> None:
    """Issue a token and print its secret once (only its sha256 is stored)."""
    issued = cli_client(ctx).create_worker_token(provider, ttl_s=ttl)
    if output == "json":
        print_json(
            {
                "token": issued.secret,
                "worker_id": str(issued.worker.id),
                "queue": issued.worker.queue,
                "expires_at": issued.expires_at.isoformat(),
            }
        )
        return
    click.echo(issued.secret)
    click.echo(
        f"worker {issued.worker.id} on {issued.worker.queue}; expires "
        f"{issued.expires_at.isoformat(timespec='seconds')}; start it with\n"
        f"  HODEI_OTP_TOKEN=<token> hodei worker start",
        err=True,
    )


@worker.command("start")
@click.option(
    "--token", envvar="HODEI_OTP_TOKEN", help="Bootstrap token (default: $HODEI_OTP_TOKEN)."
)
@click.option("--queue", help="The queue to consume (the token decides; checked if given).")
@click.option(
    "--worker-id",
    type=click.UUID,
    help="The worker the token is for (checked if given; names the process in ps).",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--api-url",
    envvar="HODEI_API_URL",
    help="Talk to this `hodei server` instead of the database (API mode; default: "
    "$HODEI_API_URL). The worker then needs no database URL.",
)
@click.option(
    "--idle-timeout",
    type=FiniteFloat(0.1),
    help="Exit after this many seconds without work (default: HODEI_WORKER_IDLE_TIMEOUT or 60).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit as soon as its queue has no job waiting or running (scripts, tests).",
)
@click.pass_context
def start(
    ctx: click.Context,
    token: str | None,
    queue: str | None,
    worker_id: uuid.UUID | None,
    concurrency: int,
    api_url: str | None,
    idle_timeout: float | None,
    burst: bool,
) -> None:
    """Register with a bootstrap token and run jobs until idle, drained or SIGTERM.

    With --api-url (HODEI_API_URL) the worker talks to `hodei server`: it exchanges the
    token for a credential of its own and holds no database URL."""
    from hodei.logconfig import configure_logging
    from hodei.runtime.worker import WorkerOptions, run_worker

    if not token:
        raise InvalidInput(
            "no bootstrap token: pass --token or set HODEI_OTP_TOKEN "
            "(create one with `hodei worker token create`)"
        )
    c = _container(ctx)
    configure_logging(c.settings.log_level, c.settings.log_format)
    options = WorkerOptions(
        queue, concurrency, idle_timeout or c.settings.worker_idle_timeout_s, worker_id, burst
    )
    control = None
    if api_url:
        from hodei.runtime.control_http import HttpControlPlane
        from hodei.settings import check_url

        check_url("--api-url (HODEI_API_URL)", api_url)
        control = HttpControlPlane(api_url)
    ctx.exit(run_worker(c, token, options, control))


@worker.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include terminated and lost workers.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@OUTPUT_OPTION
@click.pass_context
def list_workers(ctx: click.Context, show_all: bool, limit: int, output: str) -> None:
    """Workers with their state, queue, current job and heartbeat age."""
    workers = cli_client(ctx).workers(all_states=show_all, limit=limit)
    rows = [worker_to_dict(w) for w in workers]
    if output == "json":
        print_json(rows)
        return
    for row in rows:
        if row["unused_token"]:  # holds no slot and serves nothing: say so in the table
            row["state"] = f"{row['state']} (unused token)"
        elif row["state"] == WorkerState.DEGRADED:
            row["state"] = f"{row['state']} (broker unreachable)"
    print_table(
        rows, ["id", "name", "state", "queue", "current_job_id", "heartbeat_age_s", "jobs_executed"]
    )


@worker.command("show")
@click.argument("worker_id")
@OUTPUT_OPTION
@click.pass_context
def show(ctx: click.Context, worker_id: str, output: str) -> None:
    """One worker in full."""
    data = worker_to_dict(cli_client(ctx).worker(worker_id))
    print_json(data) if output == "json" else print_fields(data)


@worker.command("drain")
@click.argument("worker_id")
@click.pass_context
def drain(ctx: click.Context, worker_id: str) -> None:
    """Let a worker finish its current job, then exit."""
    drained = cli_client(ctx).drain_worker(worker_id)
    click.echo(f"worker {drained.id} is {drained.state}")


def worker_to_dict(w: Worker) -> dict[str, Any]:
    now = datetime.now(UTC)
    age = (now - w.last_heartbeat).total_seconds() if w.last_heartbeat else None
    return {
        "id": str(w.id),
        "name": w.name,
        "state": str(w.state),
        "queue": w.queue,
        "provider_id": str(w.provider_id) if w.provider_id else None,
        "infra_ref": w.infra_ref,
        "current_job_id": str(w.current_job_id) if w.current_job_id else None,
        "running_jobs": w.running_jobs,
        # What its last recorded heartbeat said it holds; outcomes kept through an outage.
        "reported_jobs": (None if w.reported_jobs is None else [str(j) for j in w.reported_jobs]),
        "pending_outcomes": w.pending_outcomes,
        "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
        "heartbeat_age_s": round(age, 1) if age is not None else None,
        "jobs_executed": w.jobs_executed,
        "termination_reason": w.termination_reason,
        # A `worker token create` token no process has presented: holds no capacity.
        "unused_token": w.unused_token,
        "created_at": w.created_at.isoformat(),
        "registered_at": w.registered_at.isoformat() if w.registered_at else None,
        "terminated_at": w.terminated_at.isoformat() if w.terminated_at else None,
    }
