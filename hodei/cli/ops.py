"""``hodei status`` and ``hodei doctor``: the system at a glance, and its consistency."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime

import click

from hodei.cli.events import client, parse_duration
from hodei.cli.output import OUTPUT_OPTION, ago, print_json, print_table
from hodei.errors import SchemaOutOfDate
from hodei.services.operators.doctor import DoctorOptions, DoctorReport
from hodei.services.operators.status import SystemStatus
from hodei.settings import mask_url

# `hodei doctor` exits with this when it found something (like a linter).
EXIT_FINDINGS = 1


@click.command()
@OUTPUT_OPTION
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Where the data is, jobs and workers by state, queues, providers and capacity,
    tokens outstanding."""
    hodei = client(ctx)
    api_url = getattr(hodei, "url", None)
    if api_url:
        result = hodei.status()
        where = {"api": mask_url(api_url)}  # shown once the server answered
    else:
        # Which database: a user who sees no jobs learns whether it is the one meant, and
        # one whose database cannot answer (not migrated, unreachable) which one that is.
        where = {
            "database": mask_url(hodei.settings.database_url),
            "broker": mask_url(hodei.settings.broker_url),
            "home": str(hodei.settings.home),
        }
        if output != "json":
            _print_where(where)
        try:
            result = hodei.status()
        except SchemaOutOfDate as exc:
            # The one line a script sees (and all that --output json prints) names it too.
            raise type(exc)(f"{exc.message} (database: {where['database']})") from None
    if output == "json":
        print_json({**where, **result.to_dict()})
        return
    if api_url:
        _print_where(where)
    _print_status(result)


def _print_where(where: dict[str, str]) -> None:
    for name, value in where.items():
        click.echo(f"{name}: {value}")


def _print_status(s: SystemStatus) -> None:
    click.echo(f"jobs ({s.total_jobs}): " + _counts(s.jobs))
    click.echo("workers: " + _counts(s.workers))
    if s.workers.get("DEGRADED"):
        click.echo(
            f"  {s.workers['DEGRADED']} DEGRADED: registered but cannot reach the broker "
            "(Celery reconnects); they take no job until they are READY again"
        )
    click.echo(f"tokens outstanding: {s.tokens_outstanding}")
    click.echo(f"scheduler: {_lead(s)}")
    click.echo("waiting for: " + _counts(s.waiting))
    click.echo("\nqueues:")
    if s.queues:
        print_table(
            [
                {
                    "queue": q.queue,
                    "provider": q.provider,
                    "pending": q.pending,
                    "queued": q.queued,
                    "running": q.running,
                    "oldest_queued": ago(q.oldest_queued_at, s.generated_at)
                    if q.oldest_queued_at
                    else None,
                }
                for q in s.queues
            ],
            ["queue", "provider", "pending", "queued", "running", "oldest_queued"],
        )
    else:
        click.echo("  no active jobs")
    click.echo("\nproviders:")
    print_table(
        [
            {
                "name": p.name,
                "type": p.provider_type,
                "status": p.status,
                "health": p.health,
                "workers": f"{p.live_workers}/{p.max_workers}",
                "busy": p.busy_workers,
                "checked": ago(p.health_checked_at, s.generated_at),
                "message": p.health_message,
            }
            for p in s.providers
        ],
        ["name", "type", "status", "health", "workers", "busy", "checked", "message"],
    )


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{state} {n}" for state, n in counts.items() if n]
    return ", ".join(shown) or "none"


@click.command()
@click.option("--since", default="24h", show_default=True, help="How much event history to check.")
@click.option(
    "--pending-after",
    default="5m",
    show_default=True,
    help="Report jobs PENDING and unpublished for longer than this.",
)
@click.option(
    "--unhealthy-after",
    default="10m",
    show_default=True,
    help="Report providers UNHEALTHY for longer than this.",
)
@OUTPUT_OPTION
@click.pass_context
def doctor(
    ctx: click.Context, since: str, pending_after: str, unhealthy_after: str, output: str
) -> None:
    """Check the whole system; exit 1 when anything is found.

    \b
    Checks: invalid transitions and gaps in each job's event history, jobs without
    events, jobs PENDING and never published, RUNNING jobs on LOST workers, expired
    tokens not marked, workers silent but not reaped, providers UNHEALTHY for long.
    Each finding names the ids involved and a command that helps.
    """
    c = client(ctx)
    options = dataclasses.replace(
        DoctorOptions(),
        since=parse_duration(since, "--since"),
        pending_after=parse_duration(pending_after, "--pending-after"),
        unhealthy_after=parse_duration(unhealthy_after, "--unhealthy-after"),
        stale_after=parse_duration(str(c.settings.worker_stale_after_s)),
    )
    report = c.doctor(options=options)
    if output == "json":
        print_json(report.to_dict())
    else:
        _print_report(report)
    if report.findings:
        sys.exit(EXIT_FINDINGS)


def _print_report(report: DoctorReport) -> None:
    window = f"since {report.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    lead = report.scheduler
    if lead is not None and lead.alive:
        click.echo(f"scheduler: {lead.holder} leads (seen {lead.renewed_age_s:.0f}s ago)")
    if report.healthy:
        click.echo(f"no problems found ({len(report.checks)} checks, history {window})")
        return
    for finding in report.findings:
        click.echo(f"[{finding.check}] {finding.message}")
        click.echo("    ids: " + ", ".join(f"{k}={v}" for k, v in finding.ids.items()))
        click.echo(f"    try: {finding.suggestion}")
    click.echo(
        f"\n{len(report.findings)} problem(s) found ({len(report.checks)} checks, "
        f"history {window}, at {datetime.now(UTC):%H:%M:%S} UTC)"
    )


def _lead(s: SystemStatus) -> str:
    lead = s.scheduler
    if lead is None:
        return "none has led yet (start `hodei scheduler`)"
    seen = ago(lead.renewed_at, s.generated_at)
    if not lead.alive:
        return f"no leader: {lead.holder} was last seen {seen}"
    return f"{lead.holder} leads since {ago(lead.since, s.generated_at)} (seen {seen})"
