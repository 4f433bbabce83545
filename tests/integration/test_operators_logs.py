"""``hodei job logs --follow``: replays from the start (or --tail N), streams live lines,
returns when the job has ended, and keeps stdout and stderr apart."""

from __future__ import annotations

import json

from hodei import JobState
from hodei.sdk import Client
from tests.support import run_cli

SCRIPT = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done"


def test_follow_streams_until_the_job_ends(client: Client) -> None:
    job = client.submit(SCRIPT)
    followed = run_cli(client.settings, "job", "logs", str(job.id), "--follow", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert client.get(job.id).state is JobState.SUCCEEDED  # it returned only at the end
    assert followed.stdout.splitlines() == ["out1", "out2", "out3"]
    assert followed.stderr.splitlines() == ["err1", "err2", "err3"]

    tail = run_cli(client.settings, "job", "logs", str(job.id), "--follow", "--tail", "2")
    assert (tail.stdout.splitlines(), tail.stderr.splitlines()) == (["out3"], ["err3"])
    nothing = run_cli(client.settings, "job", "logs", str(job.id), "--follow", "--tail", "0")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "")

    lines = run_cli(client.settings, "job", "logs", str(job.id), "--output", "json")
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    by_stream = {
        stream: [r["line"] for r in records if r["stream"] == stream]
        for stream in ("stdout", "stderr")
    }
    assert by_stream == {"stdout": ["out1", "out2", "out3"], "stderr": ["err1", "err2", "err3"]}
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    prefixed = run_cli(
        client.settings, "job", "logs", str(job.id), "--prefix", "--stream", "stderr"
    )
    assert prefixed.stderr.splitlines() == ["[stderr] err1", "[stderr] err2", "[stderr] err3"]
