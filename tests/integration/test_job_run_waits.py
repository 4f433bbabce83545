"""`hodei job run` of a job no provider can take now: accepted, says once why it waits
(each provider and why it was passed over), and keeps waiting until one can."""

from __future__ import annotations

import subprocess
import sys
import time

from hodei.sdk import Client
from tests.support import hodei_env, run_cli, terminate, wait_for


def test_job_run_says_once_why_it_waits_then_runs_when_a_provider_can(
    embedded_client: Client,
) -> None:
    client = embedded_client
    client.add_provider("spare", "local", labels={"pool": "a"})
    client.disable_provider("spare")
    stderr = client.settings.home.parent / "run.err"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "hodei", "job", "run", "--label", "pool=a", "--", "echo hi"],
            env=hodei_env(client.settings),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=client.settings.home.parent,
        )
    try:
        said = wait_for(
            lambda: [ln for ln in stderr.read_text().splitlines() if " waits: " in ln],
            timeout=30,
            message="the explanation",
        )
        assert "no provider can take it now" in said[0]
        assert "local: missing label pool=a" in said[0]
        assert "spare: status is DISABLED" in said[0]
        assert "`hodei provider enable spare`" in said[0]
        time.sleep(1.5)  # it keeps waiting, and says it only once
        assert process.poll() is None
        assert sum(" waits: " in ln for ln in stderr.read_text().splitlines()) == 1
        client.enable_provider("spare")
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            terminate(process)
    assert (process.returncode, out.strip()) == (0, "hi"), stderr.read_text()


def test_job_submit_says_why_it_waits_in_one_line_without_a_log_record(
    embedded_client: Client,
) -> None:
    """`job submit` of a job no provider can take printed only a timestamped log record
    (`2026-... WARNING hodei.services.jobs.submission: No available providers ...`), and
    `job run` printed that record as well as its own explanation."""
    settings = embedded_client.settings
    for command in ("submit", "run"):
        args = ["job", command, "--no-wait"] if command == "run" else ["job", command]
        done = run_cli(settings, *args, "--label", "pool=none", "--", "true")
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert " waits: no provider can take it now (local: missing label pool=none)" in (lines[0])
        assert lines[0].startswith("hodei: job "), lines[0]
