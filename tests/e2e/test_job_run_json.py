"""``job run --output json`` says on stderr that the command's output is not shown,
keeping stdout one JSON document."""

from __future__ import annotations

import json

import pytest

from hodei.sdk import Client
from tests.support import run_cli

pytestmark = [pytest.mark.slow]


def test_job_run_json_says_the_output_is_not_shown(embedded_client: Client) -> None:
    result = run_cli(
        embedded_client.settings,
        "job",
        "run",
        "--output",
        "json",
        "--",
        "echo j; echo e >&2; exit 3",
    )
    assert result.returncode == 3, result.stderr
    job = json.loads(result.stdout)  # stdout is the final job, one JSON document
    assert job["state"] == "FAILED" and job["exit_code"] == 3
    assert (
        f"its output is not shown with --output json: `hodei job logs {job['id']}` prints it"
        in result.stderr
    )
    assert not {"j", "e"} & set(result.stderr.splitlines())
    logs = run_cli(embedded_client.settings, "job", "logs", job["id"])
    assert (logs.stdout, logs.stderr) == ("j\n", "e\n")
