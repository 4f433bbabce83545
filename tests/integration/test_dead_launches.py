"""A launched worker whose process died before it registered (killed, crashed at start)
holds no capacity: with no scheduler, on the embedded default, it held its provider's
slot until its token expired and `expire_tokens` ran, so `job run` waited for nothing.

The first worker launched here really crashes at start: a ``sitecustomize`` on the
worker's PYTHONPATH exits 3 in the first process that has a bootstrap token."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hodei.domain.records import Worker
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import alive, fast_settings, hodei_env, pid_of, run_cli, wait_for

CRASH_FIRST_WORKER = """\
import os

marker = os.environ.get("CRASH_FIRST_WORKER")
if marker and os.environ.get("HODEI_OTP_TOKEN"):
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        os._exit(3)
"""


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """One worker at most on `local`, and a token lifetime far beyond the test's
    timeouts: a dead launch that held the slot would block every job here."""
    values = fast_settings(tmp_path / "home", token_ttl_s=600.0)
    client = _client(values)
    client.update_provider("local", max_workers=1)
    yield values
    stop_workers(client)
    client.close()


@pytest.fixture
def crash_env(tmp_path: Path, settings: Settings) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CRASH_FIRST_WORKER)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return hodei_env(settings, PYTHONPATH=path, CRASH_FIRST_WORKER=str(tmp_path / "crashed"))


def _client(settings: Settings) -> Client:
    return Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )


def _run(env: dict[str, str], settings: Settings, *args: str, timeout: float = 40) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hodei", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=settings.home.parent,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`hodei {' '.join(args)}` still waited after {timeout}s")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _first_worker(client: Client) -> Worker:
    with client.container.store.reading() as tx:
        workers = tx.workers.search(limit=100)
    return min(workers, key=lambda w: w.created_at)


def _died(client: Client) -> Worker:
    def dead() -> Worker | None:
        worker = _first_worker(client)
        pid = pid_of(worker.infra_ref)
        return worker if pid is not None and not alive(pid) else None

    return wait_for(dead, timeout=30, message="the first worker to crash")


def test_a_later_job_runs_although_a_launch_died_before_registering(
    settings: Settings, crash_env: dict[str, str]
) -> None:
    client = _client(settings)
    first = _run(crash_env, settings, "job", "submit", "--", "echo first").strip()
    dead = _died(client)
    assert dead.state is WorkerState.PROVISIONING  # nobody has noticed yet

    out = _run(crash_env, settings, "job", "run", "--", "echo second")
    assert out == "second\n"
    assert client.wait(first, timeout=30).exit_code == 0
    with client.container.store.reading() as tx:
        record = tx.workers.get(dead.id)
    assert record is not None and record.state is WorkerState.PROVISION_FAILED
    assert record.termination_reason is not None
    assert "ended before it registered" in record.termination_reason, record.termination_reason
    client.close()


def test_job_run_goes_on_when_its_own_worker_dies_before_registering(
    settings: Settings, crash_env: dict[str, str]
) -> None:
    out = _run(crash_env, settings, "job", "run", "--", "echo mine")
    assert out == "mine\n"
    client = _client(settings)
    record = _first_worker(client)
    assert record.state is WorkerState.PROVISION_FAILED
    # `job run` launched it, so it reaped its child and knows how it ended.
    assert record.termination_reason is not None
    assert "ended before it registered (exit code 3)" in record.termination_reason
    client.close()


def test_status_and_diagnose_count_no_dead_launch(
    settings: Settings, crash_env: dict[str, str]
) -> None:
    client = _client(settings)
    job_id = _run(crash_env, settings, "job", "submit", "--", "echo waits").strip()
    dead = _died(client)
    local = next(p for p in client.status().providers if p.name == "local")
    assert local.live_workers == 0
    diagnosis = client.diagnose(job_id)
    assert diagnosis.code != "worker_starting", diagnosis.verdict
    assert "never started" in diagnosis.verdict, diagnosis.verdict
    shown = run_cli(settings, "worker", "show", str(dead.id))
    assert "PROVISION_FAILED" in shown.stdout, shown.stdout
    client.close()
