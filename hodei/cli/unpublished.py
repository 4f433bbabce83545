"""A submitted job the broker did not take: say so in one line, and (``job run``) wait a
bounded time for the broker to come back.

The job is stored PENDING either way; ``dispatch_pending`` (the scheduler, or a worker
on its queue) publishes it once the broker answers. An operator of Celery expects the
submitter to be told, not a timestamped log line and an exit 0 that reads as success,
nor an endless wait.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from hodei.domain.records import Job
from hodei.domain.states import JobState
from hodei.errors import BrokerUnavailable
from hodei.settings import mask_url

if TYPE_CHECKING:
    from hodei.bootstrap import Container
    from hodei.sdk import AnyClient

# How often `job run` asks whether the broker is back while it waits.
PROBE_EVERY_S = 1.0


def is_unpublished(job: Job) -> bool:
    """A job the broker has not taken: PENDING for a provider, and not an automatic retry
    still waiting for its backoff (a manual retry is due at once)."""
    if job.state is not JobState.PENDING or job.queue is None or job.held:
        return False
    return job.next_attempt_at is None or job.next_attempt_at <= datetime.now(UTC)


@contextlib.contextmanager
def publish_failures_reported_by_caller() -> Iterator[None]:
    """While submitting: the CLI reports an unpublished job itself, in one line, so the
    dispatcher's timestamped warning would only repeat it."""
    dispatch_log = logging.getLogger("hodei.services.jobs.dispatch")
    level = dispatch_log.level
    dispatch_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        dispatch_log.setLevel(level)


def announce(client: AnyClient, job: Job) -> None:
    """The one line that says what happened to an unpublished job."""
    click.echo(
        f"hodei: job {job.id} is stored PENDING: the broker at "
        f"{mask_url(client.settings.broker_url)} is unreachable; "
        "it will be published when the broker is back",
        err=True,
    )


def wait_for_publish(client: AnyClient, job: Job) -> Job:
    """Wait up to HODEI_BROKER_WAIT seconds for the job to leave PENDING, publishing it
    as soon as the broker answers; :class:`BrokerUnavailable` (exit 5) after that."""
    from hodei.queueing.app import broker_reachable  # Celery: only when it is needed

    wait_s = client.settings.broker_wait_s
    deadline = time.monotonic() + wait_s
    while True:
        current = client.get(job.id)
        if not is_unpublished(current):
            return current
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"the broker at {mask_url(client.settings.broker_url)} is still unreachable "
                f"after {wait_s:g}s (HODEI_BROKER_WAIT); job {job.id} stays PENDING and is "
                "published when the broker is back"
            )
        if broker_reachable(client.container.app) and _publish(client.container, current):
            continue
        time.sleep(PROBE_EVERY_S)


def _publish(container: Container, job: Job) -> bool:
    """Publish ``job`` now (the scheduler would too; the claim drops a duplicate)."""
    from hodei.services.jobs.dispatch import publish_jobs  # direct mode only

    failed = publish_jobs(
        container.store, container.clock, container.publisher, [job], {job.id: "broker back"}
    )
    return not failed
