"""Bad CLI input ends in hodei's one-line error and a documented exit code, never in
click's three-line usage text or exit 70 (internal error)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest
from click.testing import CliRunner, Result

from hodei.cli.main import cli
from hodei.sdk import Client
from hodei.settings import Settings
from tests.support import hodei_env


def invoke(settings: Settings, args: Sequence[str]) -> Result:
    """``hodei ARGS`` in this process (a subprocess costs a second of imports)."""
    runner = CliRunner()
    return runner.invoke(cli, list(args), env=settings.child_environment(), catch_exceptions=False)


def _one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hodei: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "submit", "--nope", "--", "true"], "No such option '--nope'"),
        (["job", "list", "--limit", "x"], "Invalid value for '--limit'"),
        (["job", "nope"], "No such command 'nope'"),
        (["job", "show"], "Missing argument 'JOB_ID'"),
        (["job", "submit", "--timeout", "nan", "--", "true"], "'nan' is not a finite number"),
        (["job", "submit", "--timeout", "inf", "--", "true"], "'inf' is not a finite number"),
        (["job", "submit", "--backoff", "-inf", "--", "true"], "Invalid value for '--backoff'"),
        (["job", "submit", "--retries", "9" * 30, "--", "true"], "is not in the range 0<=x<=19"),
        (["events", "list", "--from-id", "9" * 23], "Invalid value for '--from-id'"),
        (["events", "follow", "--from-id", "9" * 23], "Invalid value for '--from-id'"),
        (["job", "logs", "--tail", "9" * 30, "x"], "is too large (at most 9223372036854775807)"),
        (["job", "logs", "--tail", "-1", "x"], "-1 is not in the range x>=0."),
        (["worker", "token", "create", "--ttl", "nan"], "'nan' is not a finite number"),
        (["provider", "add", "p", "--type", "local", "--priority", "9" * 30], "--priority"),
        (["provider", "add", "p", "--type", "local", "--health-interval", "nan"], "finite"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_2(
    embedded_settings: Settings, args: list[str], message: str
) -> None:
    result = invoke(embedded_settings, args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert message in line
    assert line.endswith("--help')")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "list", "--since", "9" * 23], "--since must be a duration"),
        (["events", "list", "--since", "9999999999"], "--since must be at most 100 years"),
        (["events", "list", "--since", "0001-01-01T00:00:00+05:00"], "--since must be"),
        (["doctor", "--since", "9" * 30], "--since must look like 30s, 5m, 2h or 7d"),
        (["job", "submit", "--name", "\udcff", "--", "true"], "argument 4 is not valid UTF-8"),
        (["job", "submit", "--env", "K=\udcff", "--", "true"], "not valid UTF-8: b'K=\\xff'"),
        (["events", "list", "--type", "\udced\udca7\udc93"], "b'\\xed\\xa7\\x93'"),
        (["job", "submit", "--", "\udcff"], "argument 4 is not valid UTF-8"),
        (["job", "list", "--name", "a\x00"], "argument 4 contains a NUL byte"),
        (["job", "submit", "--correlation-id", "abc\n", "--", "true"], "correlation_id must"),
        (["job", "submit", "--env", "K=" + "x" * 70_000, "--", "true"], "env K must be at most"),
        (["job", "list", "--state", "nope"], "unknown state"),
    ],
)
def test_a_bad_value_is_one_line_with_exit_2(
    embedded_settings: Settings, args: list[str], message: str
) -> None:
    result = invoke(embedded_settings, args)
    assert result.exit_code == 2, result.output
    assert message in _one_error_line(result)


def test_bytes_that_are_not_utf8_are_refused_by_the_real_cli(embedded_settings: Settings) -> None:
    # Through a real process: the OS hands Python bytes, Python gives click surrogates.
    env = hodei_env(embedded_settings)
    for args in (
        [b"job", b"submit", b"--name", b"\xff", b"--", b"true"],
        [b"events", b"list", b"--type", b"\xed\xa7\x93"],
        [b"job", b"submit", b"--", b"printf \xff"],
    ):
        done = subprocess.run(
            [sys.executable.encode(), b"-m", b"hodei", *args], env=env, capture_output=True
        )
        assert done.returncode == 2, done.stderr
        assert (
            done.stderr.decode().splitlines() == [done.stderr.decode().strip()]
            and b"is not valid UTF-8" in done.stderr
        )


def test_provider_health_exits_5_when_a_provider_is_unhealthy(
    embedded_client: Client, embedded_settings: Settings
) -> None:
    healthy = invoke(embedded_settings, ["provider", "health", "local"])
    assert (healthy.exit_code, healthy.stderr) == (0, "")
    embedded_client.add_provider(
        "brk", "docker", config={"image": "w:1", "base_url": "unix:///nonexistent/docker.sock"}
    )
    result = invoke(embedded_settings, ["provider", "health"])
    assert "UNHEALTHY" in result.stdout
    assert result.exit_code == 5
    # The health service's record of the change reads like the command's own lines.
    assert result.stderr.splitlines()[0].startswith("hodei: warning: provider brk health")
    assert result.stderr.splitlines()[-1] == "hodei: error: provider brk is UNHEALTHY"
