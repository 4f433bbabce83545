"""Output into a pipe whose reader has gone (``hodei job list | head -1``) stops the
command quietly with exit 141 (128 + SIGPIPE), as a Unix tool does; ``job run`` then
cancels its job, as on a lost terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hodei import JobState
from hodei.sdk import Client
from hodei.settings import Settings
from tests.support import hodei_env

pytestmark = [pytest.mark.slow]


def _into_closed_pipe(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``hodei ARGS`` with stdout a pipe that has no reader (``| head`` having exited):
    its first write fails, whatever the pipe's buffer would have held."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "hodei", *args],
            env=hodei_env(settings),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=90,
            cwd=settings.home.parent,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_stops_listing_commands_quietly_with_141(embedded_client: Client) -> None:
    done = embedded_client.wait(embedded_client.submit("seq 1 3", name="piped").id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    for args in (
        ("job", "list"),
        ("job", "logs", str(done.id)),
        ("events", "follow", "--from-id", "1"),
        ("events", "list"),
        ("--help",),
    ):
        result = _into_closed_pipe(embedded_client.settings, *args)
        assert (result.returncode, result.stderr) == (141, ""), args


def test_job_run_into_a_closed_pipe_cancels_its_job_and_exits_141(embedded_client: Client) -> None:
    result = _into_closed_pipe(
        embedded_client.settings, "job", "run", "--name", "piped", "--", "seq 1 3; sleep 60"
    )
    assert result.returncode == 141, result.stderr
    (job,) = embedded_client.list(name="piped")
    assert result.stderr.splitlines()[-1] == f"hodei: SIGPIPE: cancel requested for job {job.id}"
    assert "Traceback" not in result.stderr
    assert embedded_client.wait(job.id, timeout=30).state is JobState.CANCELLED
