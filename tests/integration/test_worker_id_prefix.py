"""The worker commands take the 8-hex-digit ids that timelines and `worker list` print,
or any longer unique start of an id, on the database and over the API, as the job
commands do; an ambiguous or unknown one is the same one-line error."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from hodei.domain.records import Worker
from hodei.domain.states import WorkerState
from hodei.errors import InvalidInput, WorkerNotFound
from hodei.sdk import Client
from tests.api_server import ApiServer
from tests.support import hodei_env

UNIQUE = "17438518-2c1e-4f57-9b8e-5bd2c3f1d001"
TWINS = ("abcdef12-0000-4000-8000-000000000001", "abcdef12-0000-4000-8000-000000000002")

# prefix -> (exit code, the one error line's text)
REFUSED = {
    "abcdef12": (2, "more than one worker id starts with abcdef12; give more of the id"),
    "deadbeef": (3, "no worker id starts with deadbeef"),
    "abcdef1": (2, "not a worker id: 'abcdef1' (give the whole id or at least its first 8"),
    "abcdefgh": (2, "not a worker id: 'abcdefgh'"),
}


def _add_workers(client: Client) -> None:
    """READY workers with the ids above, straight into the store (no process needed)."""
    now = datetime.now(UTC)
    with client.container.store.transaction() as tx:
        for worker_id in (UNIQUE, *TWINS):
            wid = uuid.UUID(worker_id)
            tx.workers.add(
                Worker(wid, f"w-{worker_id[:8]}", None, "hodei.local", WorkerState.READY, now, now)
            )


def _hodei(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _check_cli(env: dict[str, str]) -> None:
    for args in (("worker", "show", "17438518"), ("worker", "show", "17438518-2C1E")):
        shown = _hodei(env, *args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "id:" in shown.stdout and UNIQUE in shown.stdout
    drained = _hodei(env, "worker", "drain", "17438518")
    assert (drained.returncode, drained.stdout) == (0, f"worker {UNIQUE} is DRAINING\n"), drained
    for prefix, (code, message) in REFUSED.items():
        for command in ("show", "drain") if prefix == "abcdef12" else ("show",):
            result = _hodei(env, "worker", command, prefix)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == code, (command, prefix, result.stderr)
            assert len(lines) == 1 and message in lines[0], (command, prefix, lines)


def _check_sdk(client: Client) -> None:
    assert client.worker("17438518-2c1e").id == uuid.UUID(UNIQUE)
    with pytest.raises(InvalidInput, match="more than one worker id starts with abcdef12"):
        client.worker("abcdef12")
    with pytest.raises(WorkerNotFound, match="no worker id starts with deadbeef"):
        client.drain_worker("deadbeef")


def test_worker_commands_accept_a_unique_prefix(client: Client) -> None:
    _add_workers(client)
    _check_cli(hodei_env(client.settings))
    _check_sdk(client)


def test_worker_commands_accept_a_unique_prefix_over_the_api(api_server: ApiServer) -> None:
    _add_workers(api_server.direct)
    _check_cli(api_server.env("operator"))
    _check_sdk(api_server.client("operator"))
