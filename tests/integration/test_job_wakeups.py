"""On PostgreSQL, ``Client.wait`` and ``Client.follow_logs`` (so ``job run`` and ``job logs
--follow``) are woken by NOTIFY, not by their poll interval: with the interval set to an
hour they still see a job's end and its new output lines as they are committed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from hodei.domain.records import Job, LogLine
from hodei.domain.states import JobState
from hodei.sdk import Client
from tests.support import wait_for

AN_HOUR = 3600.0


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    # A daemon: on code that sleeps out its poll interval the test fails without hanging.
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.redis
def test_wait_returns_at_the_jobs_end_whatever_its_poll_interval(pg_client: Client) -> None:
    job = pg_client.submit("sleep 1", name="woken")
    ended: list[Job] = []
    waiter = _in_thread(lambda: ended.append(pg_client.wait(job.id, poll_s=AN_HOUR)))
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "wait slept out its poll interval: no NOTIFY woke it"
    assert ended[0].state is JobState.SUCCEEDED


@pytest.mark.postgres
@pytest.mark.redis
def test_follow_logs_gets_new_lines_and_the_end_as_they_are_committed(
    pg_client: Client,
) -> None:
    job = pg_client.submit("sleep 1; echo hello; sleep 60", name="followed")
    lines: list[LogLine] = []

    def follow() -> None:
        lines.extend(pg_client.follow_logs(job.id, poll_s=AN_HOUR))

    follower = _in_thread(follow)
    wait_for(
        lambda: any(ln.line == "hello" for ln in lines),
        timeout=60,
        message="the line to be pushed to the follower",
    )
    assert pg_client.get(job.id).state is JobState.RUNNING  # pushed, not read at the end
    pg_client.cancel(job.id)
    follower.join(timeout=60)
    assert not follower.is_alive(), "follow_logs slept out its poll interval after the end"
    assert pg_client.get(job.id).state is JobState.CANCELLED
