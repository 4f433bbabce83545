"""A job's output is stored losslessly, read back in full, kept head and tail past its
budget, and never dropped silently, with real workers on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hodei import JobState
from hodei.runtime.runner import MAX_LINE_BYTES
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import hodei_env

WAIT_S = 90


def cli_bytes(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``hodei ARGS`` as a subprocess, its output as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=hodei_env(settings),
        capture_output=True,
        timeout=120,
        cwd=settings.home.parent,
    )


def run_job(client: Client, command: str) -> str:
    job = client.submit(command)
    assert client.wait(job.id, timeout=WAIT_S).state is JobState.SUCCEEDED
    return str(job.id)


def stored(client: Client, job_id: str, stream: str) -> bytes:
    return b"".join(ln.data for ln in client.logs(job_id) if ln.stream == stream)


def test_nul_bytes_round_trip_through_job_logs_and_the_sdk(client: Client) -> None:
    job_id = run_job(client, "printf 'a\\000b\\n'; echo after-nul; printf 'no newline\\r'")
    want = b"a\x00b\nafter-nul\nno newline\r"
    cli = cli_bytes(client.settings, "job", "logs", job_id)
    assert cli.returncode == 0, cli.stderr
    assert (cli.stdout, cli.stderr) == (want, b"")
    lines = client.logs(job_id)
    assert [(ln.stream, ln.line, ln.data) for ln in lines] == [
        ("stdout", "a\ufffdb", b"a\x00b\n"),
        ("stdout", "after-nul", b"after-nul\n"),
        ("stdout", "no newline", b"no newline\r"),
    ]
    as_json = cli_bytes(client.settings, "job", "logs", job_id, "--output", "json")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["line"], r.get("data_base64")) for r in records] == [
        ("a\ufffdb", base64.b64encode(b"a\x00b\n").decode()),
        ("after-nul", None),
        ("no newline", base64.b64encode(b"no newline\r").decode()),
    ]


def test_job_run_streams_the_exact_bytes(client: Client) -> None:
    ran = cli_bytes(client.settings, "job", "run", "--", "printf 'a\\000b\\n\\377'; echo e >&2")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"a\x00b\n\xff"
    assert b"\ne\n" in ran.stderr


def test_random_binary_output_round_trips_byte_exact(client: Client, tmp_path: Path) -> None:
    data = random.Random(15).randbytes(200_000)
    assert max(len(part) for part in data.split(b"\n")) < MAX_LINE_BYTES
    (tmp_path / "blob").write_bytes(data)
    job_id = run_job(client, f"cat {tmp_path / 'blob'}")
    assert stored(client, job_id, "stdout") == data
    cli = cli_bytes(client.settings, "job", "logs", job_id)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == data


@pytest.mark.slow
def test_long_output_comes_back_in_full_and_a_limit_says_so(client: Client) -> None:
    # More than the old 1000-line read limit and the old 10,000-line retention.
    job_id = run_job(client, "seq 1 12000")
    want = "".join(f"{i}\n" for i in range(1, 12001))
    assert [ln.line for ln in client.logs(job_id)] == [str(i) for i in range(1, 12001)]
    assert sum(1 for _ in client.iter_logs(job_id)) == 12000
    assert len(client.logs(job_id, limit=1500)) == 1500
    cli = cli_bytes(client.settings, "job", "logs", job_id)
    assert (cli.returncode, cli.stdout.decode(), cli.stderr) == (0, want, b"")
    followed = cli_bytes(client.settings, "job", "logs", job_id, "--follow")
    assert followed.stdout.decode() == want
    limited = cli_bytes(client.settings, "job", "logs", job_id, "--limit", "5")
    assert limited.stdout.decode() == "1\n2\n3\n4\n5\n"
    assert limited.stderr.decode() == "hodei: output limited to 5 lines by --limit; there is more\n"


def test_a_line_over_64_kib_is_cut_with_the_note_in_system(client: Client) -> None:
    job_id = run_job(client, "python3 -c \"print('x' * 100000); print('after')\"")
    lines = client.logs(job_id)
    assert [ln.line for ln in lines if ln.stream == "stdout"] == ["x" * MAX_LINE_BYTES, "after"]
    assert [ln.line for ln in lines if ln.stream == "system"] == [
        f"hodei: a stdout line of 100000 bytes was cut to its first {MAX_LINE_BYTES} bytes"
        " (longer lines are not kept whole)"
    ]


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def small_budget_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client whose workers keep 10,000 bytes of output per attempt."""
    name = "embedded_settings" if request.param == "sqlite" else "pg_settings"
    base: Settings = request.getfixturevalue(name)
    settings = dataclasses.replace(base, max_log_bytes=10_000)
    client = Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )
    yield client
    stop_workers(client)
    client.close()


def test_past_the_budget_the_head_and_the_tail_are_kept_with_one_marker(
    small_budget_client: Client,
) -> None:
    client = small_budget_client
    job_id = run_job(client, "seq 1 5000")
    lines = client.logs(job_id)
    # Head: the first half of 10,000 bytes ("1\n" .. "1221\n" is 4,998 bytes); tail: the
    # last half ("4001\n" .. "5000\n").
    head = [str(i) for i in range(1, 1222)]
    tail = [str(i) for i in range(4001, 5001)]
    assert [ln.line for ln in lines if ln.stream == "stdout"] == head + tail
    markers = [ln for ln in lines if ln.stream == "system"]
    dropped = range(1222, 4001)
    dropped_bytes = sum(len(f"{i}\n") for i in dropped)
    assert [m.line for m in markers] == [
        "hodei: output over this attempt's limit of 10000 bytes:"
        f" {len(dropped)} lines ({dropped_bytes} bytes) dropped here,"
        " between the first and the last lines"
    ]
    position = lines.index(markers[0])
    assert (lines[position - 1].line, lines[position + 1].line) == ("1221", "4001")


def _reject_poison(engine: sa.Engine) -> None:
    """A trigger that makes the database refuse any output line containing "poison"."""
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.exec_driver_sql(
                "CREATE FUNCTION reject_poison() RETURNS trigger AS $$ BEGIN"
                " IF strpos(NEW.line, 'poison') > 0 THEN RAISE EXCEPTION 'rejected by the test';"
                " END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            c.exec_driver_sql(
                "CREATE TRIGGER reject_poison BEFORE INSERT ON job_logs"
                " FOR EACH ROW EXECUTE FUNCTION reject_poison()"
            )
        else:
            c.exec_driver_sql(
                "CREATE TRIGGER reject_poison BEFORE INSERT ON job_logs"
                " WHEN instr(NEW.line, 'poison') > 0"
                " BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END"
            )


def test_output_the_database_refuses_is_said_in_system(client: Client) -> None:
    _reject_poison(client.container.store.engine)
    job_id = run_job(client, "echo one; echo poison; echo two")
    lines = client.logs(job_id)
    assert [ln.line for ln in lines if ln.stream == "stdout"] == ["one", "two"]
    assert [ln.line for ln in lines if ln.stream == "system"] == [
        "hodei: 1 output line(s) (7 bytes) of this attempt could not be stored:"
        " rejected by the test"
    ]
    worker_logs = b"".join(p.read_bytes() for p in (client.settings.home / "logs").glob("*"))
    assert f"could not store 1 output line(s) of job {job_id}".encode() in worker_logs


@pytest.mark.postgres
def test_a_write_that_fails_once_is_retried(pg_client: Client) -> None:
    with pg_client.container.store.engine.begin() as c:
        c.exec_driver_sql("CREATE SEQUENCE log_writes")
        c.exec_driver_sql(
            "CREATE FUNCTION reject_once() RETURNS trigger AS $$ BEGIN"
            " IF nextval('log_writes') = 1 THEN RAISE EXCEPTION 'refused once'; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        c.exec_driver_sql(
            "CREATE TRIGGER reject_once BEFORE INSERT ON job_logs"
            " FOR EACH ROW EXECUTE FUNCTION reject_once()"
        )
    job_id = run_job(pg_client, "seq 1 50")
    assert stored(pg_client, job_id, "stdout") == b"".join(f"{i}\n".encode() for i in range(1, 51))
    assert [ln for ln in pg_client.logs(job_id) if ln.stream == "system"] == []
