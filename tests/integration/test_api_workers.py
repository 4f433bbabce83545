"""API-mode workers (issue 19, items 1 and 2): a worker that holds no database URL.

Everything is real: a ``hodei server`` process on a free port over PostgreSQL and Redis,
worker processes launched by the local provider (or started by hand with a bootstrap
token), and, for the protocol's refusals, the test itself calling /v1/worker as a worker
would, with credentials it got by registering.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from hodei import JobState
from hodei.domain.records import Worker
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.settings import Settings
from tests.api_server import ApiServer, running_server
from tests.support import alive, job_events, pid_of, terminate, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CREDENTIAL_PREFIX = b"hodei_wkr_"


@pytest.fixture
def worker_api(pg_settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """A server whose workers (launched by it or by the direct client) are API-mode."""
    with (
        open(tmp_path / "server.log", "wb") as log,
        running_server(pg_settings, log=log, worker_api=True) as server,
    ):
        yield server


def _environ(pid: int) -> dict[str, str]:
    """A process's initial environment, as root (the test) can read it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def _worker(client: Client, worker_id: Any) -> Worker:
    with client.container.store.reading() as tx:
        worker = tx.workers.get(worker_id)
    assert worker is not None
    return worker


def _refusals(client: Client, worker_id: Any) -> list[dict[str, Any]]:
    events = client.events(types=["WorkerRequestRefused"], aggregate_id=worker_id, limit=1000)
    return [dict(e.payload, actor=e.actor) for e in events]


def test_the_local_provider_launches_an_api_mode_worker_without_a_database_url(
    worker_api: ApiServer, tmp_path: Path
) -> None:
    submitter = worker_api.client("submitter")
    # Submitted over HTTP: the server provisions the worker.
    job = submitter.submit(["sh", "-c", "echo hello from $HODEI_JOB_ID"])
    done = submitter.wait(job.id, timeout=90)
    assert done.state is JobState.SUCCEEDED, done
    assert [ln.line for ln in submitter.logs(job.id)] == [f"hello from {job.id}"]

    worker = _worker(worker_api.direct, done.worker_id)
    pid = pid_of(worker.infra_ref)
    assert pid is not None and alive(pid)
    environ = _environ(pid)
    assert "HODEI_DATABASE_URL" not in environ, sorted(environ)
    assert not any(k.startswith("HODEI_SECRET_KEY") for k in environ), sorted(environ)
    assert "HODEI_API_TOKEN" not in environ
    assert environ["HODEI_API_URL"] == worker_api.url
    assert environ["HODEI_BROKER_URL"] == worker_api.direct.settings.broker_url
    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"postgresql" not in argv and b"hodei_" not in argv.replace(b"hodei_worker", b"")

    # Its events name it, as a worker on the database would.
    started = next(e for e in job_events(worker_api.direct, job.id) if e.event_type == "JobStarted")
    assert started.actor == f"worker:{worker.id}"

    # secret_env reaches the command (the server opens it: the worker holds no key),
    # masked in the output; the same worker runs it.
    secret = "s3cr3t-value-0123456789"
    second = worker_api.direct.submit(
        ["sh", "-c", 'echo "token=$API_SECRET"'], secret_env={"API_SECRET": secret}
    )
    second_done = worker_api.direct.wait(second.id, timeout=60)
    assert second_done.state is JobState.SUCCEEDED
    assert second_done.worker_id == worker.id
    assert [ln.line for ln in worker_api.direct.logs(second.id)] == ["token=[masked]"]

    # The credential is nowhere on disk: not in the worker's log nor the server's.
    logs = worker_api.direct.settings.home / "logs"
    for path in [*logs.iterdir(), tmp_path / "server.log"]:
        assert CREDENTIAL_PREFIX not in path.read_bytes(), path
    assert _refusals(worker_api.direct, worker.id) == []


def _start_api_worker(
    server: ApiServer, token: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """``hodei worker start`` by hand in API mode: the server's URL, the token and the
    broker, and no database URL."""
    settings = dataclasses.replace(server.direct.settings, worker_api_url=server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env.update(settings.worker_environment(), HODEI_OTP_TOKEN=token, **extra)
    assert "HODEI_DATABASE_URL" not in env
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hodei", "worker", "start"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_revoked_worker_cannot_finish_and_recovery_decides_the_job_once(
    worker_api: ApiServer, tmp_path: Path
) -> None:
    """A worker frozen mid-job is declared LOST, which revokes its credential; its job
    runs again elsewhere. When it wakes, its (successful) late finish is refused and
    recorded, and the job's outcome is the second attempt's, once."""
    direct = worker_api.direct
    issued = direct.create_worker_token("local", ttl_s=60)
    frozen = _start_api_worker(worker_api, issued.secret, tmp_path / "frozen.log")
    try:
        wait_for(
            lambda: _worker(direct, issued.worker.id).state.value == "READY",
            timeout=30,
            message="the hand-started API-mode worker to register",
        )
        job = direct.submit(
            'if [ "$HODEI_ATTEMPT" = 1 ]; then sleep 5; fi; echo "attempt $HODEI_ATTEMPT done"'
        )
        wait_for(
            lambda: (j := direct.get(job.id)).state is JobState.RUNNING and j,
            timeout=30,
            message="attempt 1 RUNNING",
        )
        assert direct.get(job.id).worker_id == issued.worker.id
        frozen.send_signal(signal.SIGSTOP)
        try:
            report = wait_for(
                lambda: (r := TASKS["reap_stale_workers"](direct.container))["requeued"] and r,
                timeout=30,
                interval=0.5,
                message="the reaper to declare the frozen worker LOST",
            )
            assert report["lost_workers"] == [str(issued.worker.id)]
            TASKS["provision"](direct.container)  # beat would, every 5 s: an API-mode worker
            done = direct.wait(job.id, timeout=90)
            assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
            assert done.worker_id != issued.worker.id
        finally:
            frozen.send_signal(signal.SIGCONT)
        # Awake: its command ended (exit 0) while it was frozen; its output and finish
        # are refused, and its heartbeat too, so it stops.
        assert frozen.wait(timeout=60) == 0
    finally:
        if frozen.poll() is None:
            terminate(frozen)

    refused = _refusals(direct, issued.worker.id)
    finishes = [r for r in refused if r["action"] == "finish"]
    assert finishes and finishes[0]["job_id"] == str(job.id) and finishes[0]["attempt"] == "1"
    assert all("the worker is LOST" in r["reason"] for r in refused), refused
    assert all(r["actor"] == f"worker:{issued.worker.id}" for r in refused)
    # Exactly one outcome: attempt 2's. Attempt 1 stays LOST; its output never landed.
    kinds = [e.event_type for e in job_events(direct, job.id)]
    assert kinds.count("JobSucceeded") == 1 and "JobFailed" not in kinds, kinds
    with direct.container.store.reading() as tx:
        attempts = [(a.attempt_no, a.state.value) for a in tx.attempts.search(job.id)]
    assert attempts == [(1, "LOST"), (2, "SUCCEEDED")]
    assert [ln.line for ln in direct.logs(job.id)] == ["attempt 2 done"]
    assert _worker(direct, issued.worker.id).state.value == "LOST"
    log = (tmp_path / "frozen.log").read_bytes()
    assert b"credential was refused" in log and CREDENTIAL_PREFIX not in log


class _AsWorker:
    """The test calling /v1/worker the way a worker does, with a credential it got."""

    def __init__(self, server: ApiServer, token: str) -> None:
        self._http = httpx.Client(base_url=server.url, timeout=30)
        body = {"token": token, "infra_ref": "test:none"}
        response = self._http.post("/v1/worker/register", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        self.id = UUID(data["worker"]["id"])
        assert data["credential"].startswith(CREDENTIAL_PREFIX.decode())
        self._http.headers["Authorization"] = f"Bearer {data['credential']}"

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._http.post(f"/v1/worker/{path}", json=body)

    def get(self, path: str) -> httpx.Response:
        return self._http.get(f"/v1/worker/{path}")


def test_a_worker_cannot_touch_another_workers_attempt_nor_claim_once_lost(
    worker_api: ApiServer,
) -> None:
    direct = worker_api.direct
    # A provider of its own, full with the two workers the test plays: nothing launched.
    direct.add_provider("manual", "local", max_workers=2)
    one = _AsWorker(worker_api, direct.create_worker_token("manual").secret)
    two = _AsWorker(worker_api, direct.create_worker_token("manual").secret)
    job = direct.submit("true", provider="manual")
    wait_for(lambda: direct.get(job.id).state is JobState.QUEUED, message="QUEUED")
    claim = {"job_id": str(job.id), "attempt": 1, "task_id": "t-1"}

    won = one.post("claims", claim)
    assert won.status_code == 200 and won.json()["won"] is True, won.text
    # The other worker: its claim of that attempt, finish, cancel check and output are
    # refused (403), each recorded on its own timeline.
    assert two.post("claims", {**claim, "task_id": "t-2"}).status_code == 403
    outcome = {"exit_code": 0}
    finish = {"job_id": str(job.id), "attempt": 1, "outcome": outcome}
    assert two.post("finishes", finish).status_code == 403
    assert two.get(f"jobs/{job.id}/1/cancel").status_code == 403
    line = {
        "id": None,
        "job_id": str(job.id),
        "attempt_no": 1,
        "stream": "stdout",
        "line": "forged",
        "ts": "2026-01-01T00:00:00Z",
        "data_b64": "Zm9yZ2VkCg==",
    }
    assert two.post("output", {"lines": [line]}).status_code == 403
    refused = _refusals(direct, two.id)
    assert sorted(r["action"] for r in refused) == ["cancel check", "claim", "finish", "output"]
    assert all(r["job_id"] == str(job.id) for r in refused)
    assert direct.get(job.id).state is JobState.RUNNING
    assert direct.logs(job.id) == []

    # Its own worker finishes it.
    finished = one.post("finishes", finish)
    assert finished.status_code == 200 and finished.json()["state"] == "SUCCEEDED"

    # Declared LOST (no heartbeat), the first worker's credential no longer works.
    lost = wait_for(
        lambda: str(one.id) in TASKS["reap_stale_workers"](direct.container)["lost_workers"],
        timeout=30,
        interval=0.5,
        message="the silent worker to be declared LOST",
    )
    assert lost
    second = direct.submit("true", provider="manual")
    wait_for(lambda: direct.get(second.id).state is JobState.QUEUED, message="QUEUED")
    late = one.post("claims", {"job_id": str(second.id), "attempt": 1, "task_id": "t-3"})
    assert late.status_code == 401, late.text
    assert one.post("heartbeat", {"record": True}).status_code == 401
    assert direct.get(second.id).state is JobState.QUEUED
    (claim_refusal,) = [r for r in _refusals(direct, one.id) if r["action"] == "claim"]
    assert claim_refusal["job_id"] == str(second.id)
    assert "the worker is LOST" in claim_refusal["reason"]


def test_api_tokens_and_worker_credentials_are_not_interchangeable(
    worker_api: ApiServer,
) -> None:
    direct = worker_api.direct
    operator = {"Authorization": f"Bearer {worker_api.tokens['admin']}"}
    heartbeat = httpx.post(
        f"{worker_api.url}/v1/worker/heartbeat", json={"record": True}, headers=operator
    )
    assert heartbeat.status_code == 401
    direct.add_provider("manual", "local", max_workers=1)
    worker = _AsWorker(worker_api, direct.create_worker_token("manual").secret)
    listed = worker._http.get("/v1/jobs")
    assert listed.status_code == 401
    assert worker.post("heartbeat", {"record": True}).status_code == 200
