"""A provider whose library is not installed: refused at add, and at run time marked
UNHEALTHY with the reason without stopping any maintenance task; `provider remove`.

The test venv has the docker package, so "not installed" is a ``docker`` module on
PYTHONPATH that raises ImportError, in the CLI subprocesses only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hodei import JobState
from hodei.domain.states import ProviderHealth, WorkerState
from hodei.errors import Conflict
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.ports.store import EventQuery
from tests.support import hodei_env

CONFIG = json.dumps({"image": "hodei-worker:never-pulled", "pull_policy": "never"})


@pytest.fixture
def without_docker(tmp_path: Path) -> Path:
    blocker = tmp_path / "no-docker"
    blocker.mkdir()
    (blocker / "docker.py").write_text("raise ImportError(\"No module named 'docker'\")\n")
    return blocker


def _cli(client: Client, blocker: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=hodei_env(client.settings, PYTHONPATH=str(blocker)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=client.settings.home.parent,
    )


def test_a_provider_whose_library_is_missing(embedded_client: Client, without_docker: Path) -> None:
    c = embedded_client
    refused = _cli(
        c, without_docker, "provider", "add", "dock", "--type", "docker", "--config", CONFIG
    )
    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "pip install 'hodei[docker]'" in refused.stderr
    assert "dock" not in {v.provider.name for v in c.providers()}

    # Added where the library is, then run where it is not (another host, a rebuilt venv).
    c.add_provider("dock", "docker", config=json.loads(CONFIG))
    submitted = _cli(c, without_docker, "job", "submit", "--provider", "dock", "--", "true")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    dock = c.provider("dock").provider
    assert dock.health is ProviderHealth.UNHEALTHY
    assert "pip install 'hodei[docker]'" in (dock.health_message or "")

    for status in ("enable", "disable"):
        assert _cli(c, without_docker, "provider", status, "dock").returncode == 0
        ran = _cli(c, without_docker, "maintenance", "run")
        assert ran.returncode == 0, ran.stderr
        assert "Traceback" not in ran.stderr
        assert [line.split(":")[0] for line in ran.stdout.splitlines()] == list(TASKS)

    busy = _cli(c, without_docker, "provider", "remove", "dock")
    assert busy.returncode == 4 and busy.stderr.count("\n") == 1, busy.stderr
    assert "1 unfinished job(s)" in busy.stderr and "--force" in busy.stderr
    forced = _cli(c, without_docker, "provider", "remove", "dock", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "provider dock removed, 1 job(s) failed"
    job = c.get(job_id)
    assert (job.state, job.error) == (JobState.FAILED, "provider dock was removed")
    assert "dock" not in {v.provider.name for v in c.providers()}
    with c.container.store.transaction() as tx:
        (removed,) = tx.events.search(EventQuery(event_types=["ProviderRemoved"]))
    assert removed.payload["failed_jobs"] == [job_id] and removed.payload["force"] is True
    c.add_provider("dock", "docker", config=json.loads(CONFIG))  # the name is free again


def test_remove_is_refused_while_a_worker_is_live(client: Client) -> None:
    client.add_provider("spare", "local")
    job = client.submit("true", provider="spare")
    assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    with pytest.raises(Conflict, match="provider spare has 1 live worker"):
        client.remove_provider("spare")
    removal = client.remove_provider("spare", force=True)
    assert [w.state for w in removal.ended_workers] == [WorkerState.READY]
    with client.container.store.transaction() as tx:
        worker = tx.workers.get(removal.ended_workers[0].id)
        history = tx.jobs.get(job.id)
    assert worker is not None and worker.state is WorkerState.TERMINATED
    assert worker.provider_id is None and worker.termination_reason == "provider spare was removed"
    assert history is not None and history.queue == "hodei.spare"  # history stays readable
