"""Stopping ``hodei job run`` by a signal cancels its job, as Ctrl-C does: SIGTERM (a CI
runner's cancel, ``timeout``) exits 143, SIGHUP (a closed terminal) 129."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from hodei import JobState
from hodei.sdk import Client
from tests.support import hodei_env, wait_for

pytestmark = [pytest.mark.slow]


def _job_run(client: Client, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hodei", "job", "run", *args],
        env=hodei_env(client.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=client.settings.home.parent,
    )


def test_a_signal_to_job_run_cancels_its_job(embedded_client: Client) -> None:
    # One after the other, so that the second finds the first one's worker warm.
    for sig, exit_code, output in ((signal.SIGTERM, 143, "text"), (signal.SIGHUP, 129, "json")):
        name = f"watched-{sig.name}"
        proc = _job_run(embedded_client, "--name", name, "--output", output, "--", "sleep 60")
        try:
            running = wait_for(
                lambda: embedded_client.list(name=name, state="RUNNING"),  # noqa: B023
                timeout=60,
                message="the job RUNNING",
            )[0]
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == exit_code, stderr
        last = stderr.splitlines()[-1]
        assert last == f"hodei: {sig.name}: cancel requested for job {running.id}"
        assert embedded_client.wait(running.id, timeout=30).state is JobState.CANCELLED
