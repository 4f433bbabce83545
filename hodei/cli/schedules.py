"""``hodei schedule ...``: cron schedules that submit a job on every tick."""

from __future__ import annotations

from typing import Any

import click

from hodei.cli.jobs import build_spec, spec_options
from hodei.cli.output import OUTPUT_OPTION, print_fields, print_json, print_table
from hodei.cli.remote import cli_client
from hodei.cli.serialize import job_to_dict
from hodei.domain.schedules import DEFAULT_CATCHUP, Catchup, Schedule
from hodei.services.jobs.schedules import ScheduleView
from hodei.services.ports.store import Fire


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """The JSON form of a schedule (its job's env names only: values may be secrets)."""
    spec = schedule.spec
    return {
        "id": str(schedule.id),
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "catchup": str(schedule.catchup),
        "paused": schedule.paused,
        "next_fire_at": _iso(schedule.next_fire_at),
        "last_fire_at": _iso(schedule.last_fire_at),
        "last_job_id": str(schedule.last_job_id) if schedule.last_job_id else None,
        "command": spec.get("command"),
        "job_name": spec.get("name"),
        "env_keys": sorted(spec.get("env") or {}),
        "labels": dict(spec.get("labels") or {}),
        "provider": spec.get("provider"),
        "timeout_s": spec.get("timeout_s"),
        "max_attempts": spec.get("max_attempts"),
        "created_by": schedule.created_by,
        "created_at": _iso(schedule.created_at),
    }


def _fire_to_dict(fire: Fire) -> dict[str, Any]:
    return {
        "fire_time": _iso(fire.fire_time),
        "trigger": fire.trigger,
        "job_id": str(fire.job_id) if fire.job_id else None,
        "fired_at": _iso(fire.fired_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@click.group()
def schedule() -> None:
    """Cron schedules: each tick submits a job (see docs/manual.md, "Cron schedules")."""


@schedule.command("add")
@click.argument("schedule_name", metavar="NAME")
@click.option(
    "--cron", "cron_expression", required=True, help="'*/5 * * * *' (6 fields: seconds first)."
)
@click.option("--timezone", "tz", default="UTC", show_default=True, help="An IANA time zone.")
@click.option(
    "--catchup",
    type=click.Choice([c.value for c in Catchup]),
    default=str(DEFAULT_CATCHUP),
    show_default=True,
    help="Ticks missed while no scheduler ran: fire the latest once, or skip them.",
)
@click.option("--paused", is_flag=True, help="Create it paused (`schedule resume` starts it).")
@spec_options
@OUTPUT_OPTION
@click.pass_context
def add(
    ctx: click.Context,
    /,
    schedule_name: str,
    cron_expression: str,
    tz: str,
    catchup: str,
    paused: bool,
    output: str,
    **params: Any,
) -> None:
    """Add a schedule; the command goes after `--`, as for `job submit`.

    \b
      hodei schedule add backup --cron '0 3 * * *' --timezone Europe/Madrid -- ./backup.sh
      hodei schedule add ping --cron '*/30 * * * * *' -- curl -fsS https://example.org
    """
    params["name"] = params["name"] or schedule_name
    # build_spec only parses --in/--at/--after (it looks no job up); add_schedule refuses
    # them with one message for the CLI, SDK and API that names these flags.
    spec = build_spec(params)
    created = cli_client(ctx).add_schedule(
        schedule_name, cron_expression, spec, timezone=tz, catchup=catchup, paused=paused
    )
    if output == "json":
        print_json(schedule_to_dict(created))
        return
    when = "paused" if created.paused else f"next tick {_iso(created.next_fire_at)}"
    click.echo(f"schedule {created.name} added ({created.cron}, {created.timezone}; {when})")


@schedule.command("list")
@OUTPUT_OPTION
@click.pass_context
def list_(ctx: click.Context, output: str) -> None:
    """Every schedule, by name."""
    rows = [schedule_to_dict(s) for s in cli_client(ctx).schedules()]
    if output == "json":
        print_json(rows)
        return
    for row in rows:
        row["state"] = "paused" if row["paused"] else "active"
    print_table(
        rows, ["name", "cron", "timezone", "state", "catchup", "next_fire_at", "last_fire_at"]
    )


@schedule.command("show")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_context
def show(ctx: click.Context, name: str, output: str) -> None:
    """One schedule and its latest fires."""
    view: ScheduleView = cli_client(ctx).schedule(name)
    data = schedule_to_dict(view.schedule)
    fires = [_fire_to_dict(f) for f in view.fires]
    if output == "json":
        print_json({**data, "fires": fires})
        return
    print_fields(data)
    if fires:
        click.echo("")
        print_table(fires, ["fire_time", "trigger", "job_id", "fired_at"])


def _change(verb: str, method: str) -> click.Command:
    @click.argument("name")
    @OUTPUT_OPTION
    @click.pass_context
    def command(ctx: click.Context, name: str, output: str) -> None:
        changed: Schedule = getattr(cli_client(ctx), method)(name)
        if output == "json":
            print_json(schedule_to_dict(changed))
            return
        click.echo(f"schedule {changed.name} {verb}")

    command.__doc__ = {
        "paused": "Stop firing until resumed.",
        "resumed": "Fire again from the next tick (ticks while paused are not caught up).",
        "removed": "Delete the schedule; the jobs it submitted stay.",
    }[verb]
    return schedule.command(method.removesuffix("_schedule"))(command)


_change("paused", "pause_schedule")
_change("resumed", "resume_schedule")
_change("removed", "remove_schedule")


@schedule.command("trigger")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_context
def trigger(ctx: click.Context, name: str, output: str) -> None:
    """Fire the schedule now (also when paused); prints the job's id."""
    job = cli_client(ctx).trigger_schedule(name)
    if output == "json":
        print_json(job_to_dict(job))
        return
    click.echo(str(job.id))
