"""What a CLI command imports: `hodei job run` and `hodei --help` load only what they
use (issue 16, item 18: their wall time is mostly imports). The commands run for real,
`job run` on PostgreSQL + Redis with a worker launched for it; what is checked is the
set of modules loaded when the process exits."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from hodei.sdk import Client
from hodei.settings import Settings
from tests.api_server import ApiServer
from tests.support import hodei_env

# Runs the CLI in-process and writes the names of the loaded modules at exit.
_PROBE = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from hodei.cli.main import main
sys.argv[0] = "hodei"
main()
"""


def _modules_loaded(
    settings: Settings, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> set[str]:
    out = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        env=env or hodei_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return set(out.read_text().split())


def _loaded(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if m.startswith(prefixes) or m in prefixes)


@pytest.mark.postgres
@pytest.mark.redis
def test_job_run_imports_neither_the_worker_nor_the_operators_commands(
    pg_client: Client, pg_settings: Settings, tmp_path: Path
) -> None:
    modules = _modules_loaded(pg_settings, tmp_path, "job", "run", "--", "true")
    assert "hodei.queueing.publisher" in modules  # it did publish
    # The worker's side (tasks, signal handlers, runtime) and what only it uses.
    assert _loaded(modules, "hodei.queueing.tasks", "hodei.runtime", "tenacity") == []
    # The other commands, the operators' views, the API's libraries, alembic.
    assert _loaded(modules, "hodei.cli.ops", "hodei.cli.server", "hodei.cli.workers") == []
    assert (
        _loaded(modules, "hodei.services.operators.doctor", "hodei.services.operators.diagnosis")
        == []
    )
    assert (
        _loaded(modules, "hodei.services.operators.status", "hodei.services.operators.verdicts")
        == []
    )
    assert _loaded(modules, "pydantic", "fastapi", "httpx", "alembic") == []


def test_job_run_on_the_embedded_default_imports_neither_postgresql_nor_mysql(
    embedded_client: Client, embedded_settings: Settings, tmp_path: Path
) -> None:
    # SQLite database and broker: psycopg (for PostgreSQL's LISTEN), SQLAlchemy's
    # PostgreSQL dialect (for JSONB) and its MySQL one (for kombu's table options) were
    # each imported all the same, a tenth of a second together; Celery's Django fix-up
    # imported its worker. (The home's first command migrates it, through alembic and
    # all its dialects: that one is made here.)
    assert embedded_client.list(limit=1) == []
    modules = _modules_loaded(embedded_settings, tmp_path, "job", "run", "--", "true")
    assert "hodei.queueing.sqlite_transport" in modules  # it did publish, to SQLite
    assert _loaded(modules, "psycopg", "sqlalchemy.dialects.postgresql") == []
    assert _loaded(modules, "sqlalchemy.dialects.mysql") == []
    assert _loaded(modules, "celery.worker", "celery.fixups") == []


# The direct mode's stack: the database, its drivers, the broker's clients, and httpx.
_DIRECT_STACK = ("sqlalchemy", "psycopg", "celery", "kombu", "redis", "httpx", "alembic")


@pytest.mark.postgres
@pytest.mark.redis
def test_job_run_and_its_streams_over_the_api_import_no_direct_mode_stack(
    api_server: ApiServer, tmp_path: Path
) -> None:
    # Over the API the CLI needs only the standard library's HTTP and pydantic: not the
    # database, the broker, nor httpx (its import alone is about 140 ms).
    env = api_server.env("submitter")
    settings = api_server.direct.settings
    modules = _modules_loaded(settings, tmp_path, "job", "run", "--", "echo hi", env=env)
    assert "hodei.sdk_http" in modules  # it did go over the API
    assert _loaded(modules, *_DIRECT_STACK) == []
    assert {"hodei.sdk", "hodei.bootstrap"} & modules == set()
    assert _loaded(modules, "hodei.store", "hodei.queueing", "hodei.runtime") == []
    job_id = api_server.client("viewer").list(limit=1)[0].id
    follow = _modules_loaded(settings, tmp_path, "job", "logs", "--follow", str(job_id), env=env)
    assert _loaded(follow, *_DIRECT_STACK) == []
    # `events follow` runs until interrupted: read one event, then Ctrl-C it.
    out = tmp_path / "modules.txt"
    args = ["events", "follow", "--from-id", "1", "-o", "json"]
    with subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(out), *args],
        env=api_server.env("viewer"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("{")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    assert _loaded(set(out.read_text().split()), *_DIRECT_STACK) == []


def test_help_imports_no_command_module(embedded_settings: Settings, tmp_path: Path) -> None:
    modules = _modules_loaded(embedded_settings, tmp_path, "--help")
    assert _loaded(modules, "hodei.cli.jobs", "hodei.cli.ops", "hodei.sdk") == []
    assert _loaded(modules, "sqlalchemy", "celery", "kombu") == []


def test_the_help_list_says_what_each_command_says() -> None:
    # `hodei --help` lists the commands from COMMANDS without importing them: the short
    # help there must be the one each command would give, at any width.
    from hodei.cli.main import COMMANDS, cli, load_command

    for name in COMMANDS:
        command = load_command(name)
        assert command.name == name
        for limit in (30, 45, 200):
            expected = command.get_short_help_str(limit)
            assert click.utils.make_default_short_help(COMMANDS[name][2], limit) == expected
    assert {c for c in COMMANDS} == set(cli.list_commands(click.Context(cli)))
