"""Configuration a user gets wrong, and where hodei keeps its data, through the ``hodei``
CLI as a subprocess: each mistake is one line and a documented exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hodei.errors import InvalidConfiguration, ServiceUnavailable


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no HODEI_* at all, HOME in the test's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HODEI_", "XDG_"))}
    env["HOME"] = str(tmp_path / "user")
    env.update(extra)
    return env


def hodei(
    tmp_path: Path, *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=_env(tmp_path, **env),
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hodei: error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_the_default_home_does_not_move_with_the_current_directory(tmp_path: Path) -> None:
    one, two = tmp_path / "project-a", tmp_path / "project-b"
    one.mkdir()
    two.mkdir()
    added = hodei(tmp_path, "provider", "add", "spare", "--type", "local", cwd=one)
    assert added.returncode == 0, added.stderr
    listed = hodei(tmp_path, "provider", "list", "--output", "json", cwd=two)
    assert listed.returncode == 0, listed.stderr
    assert "spare" in listed.stdout
    home = tmp_path / "user" / ".local" / "share" / "hodei"
    status = hodei(tmp_path, "status", cwd=two)
    assert f"database: sqlite:///{home}/hodei.sqlite" in status.stdout.splitlines()
    assert not (one / ".hodei").exists() and not (two / ".hodei").exists()
    # $XDG_DATA_HOME wins over ~/.local/share, and HODEI_HOME over both.
    xdg = hodei(tmp_path, "status", XDG_DATA_HOME=str(tmp_path / "xdg"))
    assert f"home: {tmp_path / 'xdg' / 'hodei'}" in xdg.stdout.splitlines()
    own = hodei(tmp_path, "status", HODEI_HOME=str(tmp_path / "mine"))
    assert f"home: {tmp_path / 'mine'}" in own.stdout.splitlines()


def test_a_sqlite_file_in_a_missing_directory_is_an_error_not_a_new_database(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "typo"
    db = hodei(tmp_path, "job", "list", HODEI_DATABASE_URL=f"sqlite:///{missing}/hodei.sqlite")
    assert_one_line_error(db, InvalidConfiguration.exit_code, "HODEI_DATABASE_URL", str(missing))
    broker = hodei(
        tmp_path,
        "job",
        "submit",
        "--",
        "true",
        HODEI_HOME=str(tmp_path / "home"),
        HODEI_BROKER_URL=f"sqla+sqlite:///{missing}/broker.sqlite",
    )
    assert_one_line_error(broker, InvalidConfiguration.exit_code, "HODEI_BROKER_URL")
    assert not missing.exists()


@pytest.mark.parametrize("url", ["garbage://x", "localhost:6379"])
def test_a_broker_url_without_a_transport_is_one_line(tmp_path: Path, url: str) -> None:
    result = hodei(
        tmp_path, "job", "submit", "--", "true", HODEI_HOME=str(tmp_path), HODEI_BROKER_URL=url
    )
    assert_one_line_error(result, InvalidConfiguration.exit_code, "HODEI_BROKER_URL", url)


def test_a_home_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        parent = Path("/sys/hodei-test")  # read-only even for root
    else:
        parent = tmp_path / "read-only"
        parent.mkdir(mode=0o555)
    result = hodei(tmp_path, "job", "list", HODEI_HOME=str(parent / "home"))
    assert_one_line_error(result, InvalidConfiguration.exit_code, "HODEI_HOME", str(parent))


def test_flower_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hodei(tmp_path, "flower", "--port", str(port), HODEI_HOME=str(tmp_path / "h"))
    assert_one_line_error(result, ServiceUnavailable.exit_code, f"127.0.0.1:{port}", "in use")


@pytest.mark.parametrize(
    "command",
    [("server",), ("server", "--workers", "2"), ("serve",)],
    ids=["server", "server-workers", "serve"],
)
def test_a_server_on_a_port_in_use_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`hodei server` said it as uvicorn's log lines and exit 3 (NotFound's code)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hodei(tmp_path, *command, "--port", str(port), HODEI_HOME=str(tmp_path / "h"))
    assert_one_line_error(result, ServiceUnavailable.exit_code, f"127.0.0.1:{port}", "in use")


def test_provider_health_without_the_docker_library_names_the_extra(tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    added = hodei(
        tmp_path,
        "provider",
        "add",
        "dock",
        "--type",
        "docker",
        "--config",
        '{"image": "hodei-worker:latest"}',
        HODEI_HOME=home,
    )
    assert added.returncode == 0, added.stderr
    # An installation without the `docker` extra: the module cannot be imported.
    shim = tmp_path / "no-docker" / "docker"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'docker'\")\n")
    path = os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))
    result = hodei(tmp_path, "provider", "health", HODEI_HOME=home, PYTHONPATH=path)
    assert "Traceback" not in result.stderr, result.stderr
    # The table names the extra to install; stderr has the health change, logged once,
    # and the error line of an UNHEALTHY provider (exit 5), nothing more.
    assert "pip install 'hodei[docker]'" in result.stdout
    assert result.returncode == ServiceUnavailable.exit_code, result.stderr
    assert len(result.stderr.splitlines()) <= 2, result.stderr
    # Both read like the command's own lines, not a timestamped log record.
    assert all(line.startswith("hodei: ") for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("events", "follow"),
        ("job", "run", "--", "true"),
        ("job", "logs", "--follow", "00000000-0000-0000-0000-000000000000"),
        ("job", "show", "00000000-0000-0000-0000-000000000000"),
        ("status",),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_an_api_url_nothing_answers_on_fails_at_once(tmp_path: Path, args: tuple[str, ...]) -> None:
    # `events follow` used to retry such a server forever; once it has been reached, a
    # dropped stream is still reconnected (tests/integration/test_api_streams.py).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the CLI connects: refused
    url = f"http://127.0.0.1:{port}"
    result = hodei(tmp_path, *args, timeout=30, HODEI_API_URL=url, HODEI_API_TOKEN="hodei_pat_x")
    assert result.returncode == ServiceUnavailable.exit_code, result.stderr
    assert result.stderr.splitlines()[0] == f"hodei: error: cannot reach the hodei API at {url}"
    assert "hodei_pat_x" not in result.stderr


@pytest.mark.parametrize(
    ("args", "variable", "url"),
    [
        (
            ("job", "list"),
            "HODEI_DATABASE_URL",
            "postgresql://postgres:x@y:1234TOPSECRET@127.0.0.1:5432/db",
        ),
        (
            ("db", "current"),
            "HODEI_DATABASE_URL",
            "postgresql://postgres:x@y:1234TOPSECRET@127.0.0.1:5432/db",
        ),
        (("status",), "HODEI_DATABASE_URL", "postgresql://postgres:pa@TOPSECRET@127.0.0.1:5432/db"),
        (("status",), "HODEI_BROKER_URL", "amqp://guest:x@y:99TOPSECRET@127.0.0.1:5672//"),
        (("job", "list"), "HODEI_API_URL", "http://admin:x@TOPSECRET@127.0.0.1:1"),
        (("status",), "HODEI_WORKER_API_URL", "http://admin:x@TOPSECRET@127.0.0.1:1"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.partition("://")[0],
)
def test_a_password_with_an_unescaped_at_is_refused_without_showing_it(
    tmp_path: Path, args: tuple[str, ...], variable: str, url: str
) -> None:
    # It was read as host:port (`internal error: ValueError: invalid literal for int()`,
    # exit 70), or as a host name the resolver could not find, or shown as
    # `guest:***@y:99TOPSECRET@...` by `hodei status`: part of the password every time.
    result = hodei(tmp_path, *args, HODEI_HOME=str(tmp_path / "h"), **{variable: url})
    assert_one_line_error(
        result, InvalidConfiguration.exit_code, variable, "'@'", "percent-encode", "%40"
    )
    assert "TOPSECRET" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "variable", "url"),
    [
        (("job", "list"), "HODEI_DATABASE_URL", "postgresql://postgres:pw@127.0.0.1:54x2/db"),
        (("job", "submit", "--", "true"), "HODEI_BROKER_URL", "redis://:pw@127.0.0.1:63x9/0"),
        (("job", "list"), "HODEI_API_URL", "http://127.0.0.1:80x0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.partition("://")[0],
)
def test_a_port_that_is_not_a_number_is_one_line(
    tmp_path: Path, args: tuple[str, ...], variable: str, url: str
) -> None:
    # It was `hodei: internal error: ValueError: ...`, exit 70.
    result = hodei(tmp_path, *args, HODEI_HOME=str(tmp_path / "h"), **{variable: url})
    assert_one_line_error(result, InvalidConfiguration.exit_code, variable, "is not a port number")
