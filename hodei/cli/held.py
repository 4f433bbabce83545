"""``job run`` of a held job: say once what it waits for, and (with a database
connection) release it when its gates open, so the embedded default needs no scheduler
for a job it waits on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from hodei.domain.records import Job
from hodei.domain.states import JobState

if TYPE_CHECKING:
    from hodei.sdk import AnyClient

# How often a waiting `job run` checks its own job's gates.
CHECK_EVERY_S = 0.2


def announce(client: AnyClient, job: Job) -> None:
    """One line: the job is held, and why (its diagnose verdict)."""
    if not job.held or job.state is not JobState.PENDING:
        return
    diagnosis = client.diagnose(job.id)
    if not diagnosis.code.startswith("waiting_"):
        return  # it no longer waits (cancelled by a failed dependency, released, ...)
    click.echo(f"hodei: job {job.id} waits: {diagnosis.verdict}", err=True)


def wait_for_release(client: AnyClient, job: Job) -> Job:
    """Until ``job`` is released or ended. Over the API the server's scheduler releases
    it; with the database this process checks its gates itself and publishes it."""
    from hodei.sdk import Client  # here: over the API, `job run` never imports it

    while True:
        current = client.get(job.id)
        if not current.held or current.state is not JobState.PENDING:
            return current
        # With the database (not a server), release it here when its gates open.
        if isinstance(client, Client) and client.container.hodei.release_due([current]):
            return client.get(job.id)
        time.sleep(CHECK_EVERY_S)
