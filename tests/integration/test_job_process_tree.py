"""Nothing a job started outlives it: what left its process group (setsid, a double
fork, nohup) is killed at its end, its timeout or its cancellation, by a real worker
with a cgroup per job and without one (subreaper and sweep)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hodei import JobState
from hodei.sdk import Client
from tests.conftest import stop_workers
from tests.services import unavailable
from tests.support import (
    escaping_command,
    fast_settings,
    kill_survivors,
    survivors,
    wait_for,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture(params=["auto", "off"], ids=["cgroup-if-possible", "no-cgroup"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if not Path("/proc/self/stat").exists():
        unavailable("this test needs Linux /proc")
    settings = fast_settings(tmp_path / ".hodei", job_cgroup=request.param)
    client = Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )
    yield client
    stop_workers(client)
    client.close()


def test_no_process_of_a_job_survives_its_end_timeout_or_cancel(client: Client) -> None:
    tag = f"{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    try:
        ended = client.submit(escaping_command(f"{tag}1", "echo done"))
        timed_out = client.submit(escaping_command(f"{tag}2", "sleep 30"), timeout_s=3)
        cancelled = client.submit(escaping_command(f"{tag}3", "sleep 30"))
        wait_for(
            lambda: len(survivors(f"{tag}3")) >= 5,
            timeout=60,
            message="the third job's escapes to start",
        )
        client.cancel(cancelled.id)
        finals = [client.wait(job.id, timeout=60) for job in (ended, timed_out, cancelled)]

        assert [j.state for j in finals] == [
            JobState.SUCCEEDED,
            JobState.TIMED_OUT,
            JobState.CANCELLED,
        ]
        assert survivors(tag) == []
        system = [ln.line for ln in client.logs(ended.id) if ln.stream == "system"]
        assert system == [
            "hodei: killed 4 process(es) the command left running outside its process group"
        ], system
    finally:
        kill_survivors(tag)
