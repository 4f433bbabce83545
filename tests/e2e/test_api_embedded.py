"""`hodei server` on the embedded default (SQLite database and broker, local
workers): the remote flow needs no service at all."""

from __future__ import annotations

import subprocess
import sys

from hodei.settings import Settings
from tests.api_server import running_server


def test_the_server_runs_on_the_embedded_default(embedded_settings: Settings) -> None:
    """SQLite database and broker, local workers: the same remote flow, no services."""
    with running_server(embedded_settings) as server:
        run = subprocess.run(
            [sys.executable, "-m", "hodei", "job", "run", "--", "echo embedded"],
            env=server.env("submitter"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (run.returncode, run.stdout) == (0, "embedded\n"), run.stderr
        client = server.client("viewer")
        [job] = client.list()
        assert job.submitted_by == "api:test-submitter"
        stream = client.follow_events(from_id=1, types=["JobSucceeded"])
        assert next(stream).aggregate_id == job.id  # SQLite: the server's follower polls
        stream.close()
        client.close()
