"""``hodei maintenance run`` and ``hodei scheduler`` (beat plus a control worker)."""

from __future__ import annotations

import json

import click

from hodei.bootstrap import Container
from hodei.settings import Settings


@click.group()
def maintenance() -> None:
    """Run the periodic upkeep tasks by hand."""


@maintenance.command("run")
@click.option(
    "--task",
    "task_names",
    multiple=True,
    help="Run only this task (repeatable); default: all of them.",
)
@click.pass_context
def run(ctx: click.Context, task_names: tuple[str, ...]) -> None:
    """Run the maintenance tasks once and print what each did."""
    from hodei.errors import HodeiError, InvalidInput
    from hodei.queueing.maintenance_tasks import TASKS

    unknown = [n for n in task_names if n not in TASKS]
    if unknown:
        raise InvalidInput(f"unknown task {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    settings: Settings = ctx.find_root().obj
    container = Container(settings)
    failed: list[str] = []
    for name in task_names or tuple(TASKS):
        try:
            report = TASKS[name](container)
        except HodeiError as exc:  # one task's failure must not stop the others
            report = {"error": str(exc)}
            failed.append(name)
        click.echo(f"{name}: {json.dumps(report, default=str)}")
    if failed:
        raise HodeiError(f"maintenance task(s) failed: {', '.join(failed)}")


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 16), default=2, show_default=True)
@click.pass_context
def scheduler(ctx: click.Context, concurrency: int) -> None:
    """Run beat, the cron schedules and a worker on hodei.control in one process.

    Several may run (two machines, a rolling restart): one leads, sending the
    maintenance tasks and firing cron ticks; the others stand by and take over within
    seconds of its end (`hodei status` names the leader).
    """
    import socket

    from celery.beat import EmbeddedService

    from hodei.logconfig import configure_logging
    from hodei.queueing.beat import LeaderBeatScheduler
    from hodei.queueing.leader import Leadership, holder_name, lock_for
    from hodei.queueing.leader_loop import cron_loop, due_jobs_loop
    from hodei.queueing.names import CONTROL_QUEUE
    from hodei.store import outage

    settings: Settings = ctx.find_root().obj
    # It launches local workers, so it is their jobs' grandparent: see runtime/hardening.
    from hodei.runtime import hardening

    hardening.make_undumpable()
    configure_logging(settings.log_level, settings.log_format)
    outage.DATABASE.announce()
    container = Container(settings)
    container.ensure_schema()
    settings.make_home()
    holder = holder_name()
    leadership = Leadership(
        lock_for(settings.database_url, holder, settings.home),
        container.engine,
        container.clock,
        holder,
    )
    app = container.app
    app.hodei_leadership = leadership
    beat = EmbeddedService(app, thread=True, scheduler_cls=LeaderBeatScheduler)
    loops = [cron_loop(container, leadership), due_jobs_loop(container, leadership)]
    leadership.start()
    beat.start()
    for loop in loops:
        loop.start()
    try:
        app.Worker(
            hostname=f"hodei-scheduler@{socket.gethostname()}",
            queues=[CONTROL_QUEUE],
            pool="threads",
            concurrency=concurrency,
            without_mingle=True,
            without_gossip=True,
            loglevel=settings.log_level,
        ).start()
    finally:
        for loop in reversed(loops):
            loop.stop()
        beat.stop()
        leadership.stop()  # the next scheduler takes over at once, not after a timeout
