"""The embedded default (SQLite + SQLite broker + local provider), driven through the
``hodei`` CLI as a subprocess, the way a new user runs it."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hodei.settings import Settings
from tests.support import hodei_env, run_cli

pytestmark = [pytest.mark.slow]


@pytest.fixture
def home(embedded_settings: Settings):
    yield embedded_settings
    from hodei.sdk import Client
    from tests.conftest import stop_workers

    client = Client.from_env(
        **{
            f.name: getattr(embedded_settings, f.name)
            for f in dataclasses.fields(embedded_settings)
        }
    )
    stop_workers(client)
    client.close()


def test_job_run_streams_output_and_exits_with_the_command_s_code(home: Settings) -> None:
    ok = run_cli(home, "job", "run", "--", "echo hello from hodei")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "hello from hodei\n"
    assert "SUCCEEDED" in ok.stderr.splitlines()[-1]

    failed = run_cli(home, "job", "run", "--", "echo oops >&2; exit 4")
    assert failed.returncode == 4
    assert "oops" in failed.stderr and "FAILED (exit code 4, nonzero_exit" in failed.stderr


def test_submit_list_show_logs_and_timeline(home: Settings) -> None:
    submitted = run_cli(
        home,
        "job",
        "submit",
        "--name",
        "greet",
        "--correlation-id",
        "wf-7",
        "--env",
        "WHO=world",
        "--",
        "echo hello $WHO",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    waited = run_cli(home, "job", "run", "--output", "json", "--", "true")
    assert json.loads(waited.stdout)["state"] == "SUCCEEDED"

    shown = json.loads(run_cli(home, "job", "show", job_id, "-o", "json").stdout)
    assert shown["state"] == "SUCCEEDED" and shown["name"] == "greet"
    assert {
        "id",
        "name",
        "state",
        "attempt",
        "exit_code",
        "failure_reason",
        "created_at",
        "started_at",
        "finished_at",
    } <= set(shown)
    assert run_cli(home, "job", "logs", job_id).stdout == "hello world\n"
    listed = json.loads(
        run_cli(home, "job", "list", "--correlation-id", "wf-7", "-o", "json").stdout
    )
    assert [j["id"] for j in listed] == [job_id]
    table = run_cli(home, "job", "list", "--state", "SUCCEEDED").stdout
    assert job_id in table and table.splitlines()[0].startswith("ID")

    timeline = json.loads(run_cli(home, "job", "timeline", job_id, "-o", "json").stdout)
    own = [e for e in timeline if e["aggregate_type"] == "job"]
    assert [e["event_type"] for e in own] == [
        "JobCreated",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]
    assert {"occurred_at", "event_type", "actor", "correlation_id", "payload"} <= set(own[0])
    assert own[0]["actor"].startswith("cli:") and own[0]["correlation_id"] == "wf-7"
    # Its worker's registration is on the same timeline, in order.
    kinds = [e["event_type"] for e in timeline]
    assert kinds.index("WorkerReady") < kinds.index("JobStarted")


def test_timeout_cancel_and_retry(home: Settings) -> None:
    timed = run_cli(home, "job", "run", "--timeout", "1", "--", "sleep 30")
    assert timed.returncode == 124 and "TIMED_OUT" in timed.stderr

    job_id = run_cli(home, "job", "submit", "--", "sleep 30").stdout.strip()
    cancel = run_cli(home, "job", "cancel", job_id)
    assert cancel.returncode == 0
    retried = run_cli(home, "job", "retry", job_id)
    assert retried.returncode == 0 and "attempt 2" in retried.stdout
    run_cli(home, "job", "cancel", job_id)


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["job", "show", "not-a-uuid"], "hodei: error: not a job id: 'not-a-uuid'", 2),
        (
            ["job", "show", "00000000-0000-4000-8000-00000000dead"],
            "hodei: error: no job 00000000-0000-4000-8000-00000000dead",
            3,
        ),
        (
            ["job", "run", "--timeout", "0", "--", "true"],
            "hodei: error: invalid job: timeout must be between 1s and 604800s, got 0s",
            2,
        ),
        (
            ["job", "run", "--env", "NOEQUALS", "--", "true"],
            "hodei: error: --env must look like KEY=VALUE, got 'NOEQUALS'",
            2,
        ),
        (["job", "list", "--state", "DONE"], "hodei: error: unknown state in ['DONE']", 2),
        (["maintenance", "run", "--task", "nope"], "hodei: error: unknown task nope", 2),
        (["worker", "start"], "hodei: error: no bootstrap token", 2),
    ],
)
def test_bad_input_gets_one_line_and_a_documented_exit_code(
    home: Settings, args: list[str], message: str, code: int
) -> None:
    before = _job_rows(home)
    result = run_cli(home, *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert _job_rows(home) == before  # nothing stored is lost or changed


def test_cancelling_a_finished_job_is_a_conflict_and_changes_nothing(home: Settings) -> None:
    job_id = json.loads(run_cli(home, "job", "run", "-o", "json", "--", "true").stdout)["id"]
    before = _job_rows(home)
    result = run_cli(home, "job", "cancel", job_id)
    assert result.returncode == 4
    assert result.stderr.strip() == f"hodei: error: job {job_id} is already SUCCEEDED"
    assert _job_rows(home) == before


def test_a_broken_database_url_is_one_line(home: Settings, tmp_path: Path) -> None:
    import dataclasses

    broken = dataclasses.replace(home, database_url="postgresql://nobody@127.0.0.1:1/none")
    result = run_cli(broken, "job", "list")
    assert result.returncode == 5
    assert result.stderr.startswith("hodei: error: database unavailable:")
    assert "Traceback" not in result.stderr
    # The driver's error was repeated as a `caused by:` line under its own prefix.
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_help_lists_the_exit_codes(home: Settings) -> None:
    text = run_cli(home, "--help").stdout
    for line in (
        "2  InvalidInput",
        "3  NotFound",
        "4  Conflict",
        "5  ServiceUnavailable",
        "7  TokenRejected",
    ):
        assert line in text


def _job_rows(settings: Settings) -> list[tuple]:
    path = settings.database_url.removeprefix("sqlite:///")
    if not Path(path).exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, state, attempt, updated_at FROM jobs ORDER BY id").fetchall()


def test_a_command_that_cannot_start_exits_127_as_documented(home: Settings) -> None:
    # Several arguments run as argv, without a shell: the worker cannot spawn it.
    result = run_cli(home, "job", "run", "--", "/nonexistent/hodei-test-command", "arg")
    assert result.returncode == 127, result.stderr
    assert "FAILED" in result.stderr and "spawn_error" in result.stderr
    manual = (Path(__file__).resolve().parents[2] / "docs" / "manual.md").read_text()
    assert "127 when the command could not be started" in manual


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a worker running as root")
def test_a_missing_command_of_a_job_run_as_nobody_is_not_found(
    home: Settings, tmp_path: Path
) -> None:
    """A root worker's job runs as nobody with the worker's PATH, which named a directory
    nobody cannot search (root's ~/.cargo/bin): a missing command read "permission
    denied" (EACCES wins the PATH walk) instead of "not found"."""
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    private.chmod(0o700)
    settings = dataclasses.replace(home, job_user="")  # the default: nobody for root
    env = hodei_env(settings, PATH=f"{private / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def job_run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hodei", "job", "run", "--", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=settings.home.parent,
        )

    argv = job_run("nonexistent_cmd_xyz", "arg")
    assert argv.returncode == 127, argv.stderr
    assert "hodei: command not found: nonexistent_cmd_xyz" in argv.stderr
    shell = job_run("nonexistent_cmd_xyz")
    assert shell.returncode == 127, shell.stderr
    assert "nonexistent_cmd_xyz: not found" in shell.stderr
    assert "ermission denied" not in argv.stderr + shell.stderr
    found = job_run("echo", "still on the PATH")  # the searchable directories stay
    assert (found.returncode, found.stdout) == (0, "still on the PATH\n"), found.stderr
