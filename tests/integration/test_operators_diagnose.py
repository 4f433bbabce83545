"""``hodei job diagnose``: the right verdict for each planted scenario, on SQLite and
PostgreSQL, with the five steps in its output."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from hodei import JobState
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from tests.integration.operators_plant import (
    HAPPY,
    now,
    plant_job,
    plant_worker,
)
from tests.support import run_cli, wait_for


def test_a_label_no_provider_has(client: Client) -> None:
    job = client.submit("nvidia-smi", labels={"gpu": "true"})
    result = client.diagnose(job.id)
    assert result.code == "no_provider"
    assert result.verdict == "no provider has label gpu=true"
    assert "--label gpu=true" in result.action
    providers = next(s for s in result.steps if s.title.startswith("3."))
    assert providers.lines == ["local: missing label gpu=true"]


def test_the_only_worker_stopped_heartbeating(client: Client) -> None:
    worker = plant_worker(client, state=WorkerState.READY, heartbeat_age=timedelta(minutes=4))
    job = plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(minutes=3)
    )
    result = client.diagnose(job.id)
    assert result.code == "stale_worker"
    assert re.fullmatch(
        rf"the only worker on hodei\.local \({str(worker.id)[:8]}\) stopped heartbeating "
        r"4m \ds ago",
        result.verdict,
    ), result.verdict
    assert "reap_stale_workers" in result.action
    workers = next(s for s in result.steps if s.title.startswith("4."))
    assert re.fullmatch(
        rf"{str(worker.id)[:8]} READY, heartbeat 4m \ds ago \(stale\)", workers.lines[0]
    )


def test_waiting_for_its_retry(client: Client) -> None:
    job = client.submit(
        "echo flaky >&2; exit 1", max_attempts=2, retry={"backoff_s": 600, "max_backoff_s": 600}
    )
    waiting = wait_for(
        lambda: (j := client.get(job.id)).next_attempt_at and j, message="retry scheduled"
    )
    assert waiting.state is JobState.PENDING and waiting.attempt == 2
    result = client.diagnose(job.id)
    assert result.code == "waiting_retry"
    due = waiting.next_attempt_at
    assert due is not None
    assert result.verdict.startswith(
        f"the job is waiting for its retry at {due:%H:%M:%S} (attempt 2 of 2, in "
    )
    attempts = next(s for s in result.steps if s.title.startswith("1."))
    assert "attempt 1: FAILED exit 1" in attempts.lines[-1]


def test_queued_with_no_worker(client: Client) -> None:
    job = plant_job(
        client, state=JobState.QUEUED, steps=HAPPY[:2], queued_at=now() - timedelta(minutes=2)
    )
    result = client.diagnose(job.id)
    assert result.code == "no_worker"
    assert result.verdict.startswith("queued on hodei.local for 2m")
    assert result.verdict.endswith("but no worker serves that queue")
    assert "--task provision" in result.action
    queue = next(s for s in result.steps if s.title.startswith("2."))
    assert queue.lines[0].startswith("in job_queue on hodei.local since 2m")


def test_a_succeeded_job_and_the_cli(client: Client) -> None:
    job = client.submit("echo done")
    assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    result = client.diagnose(job.id)
    assert (result.code, result.action) == ("succeeded", "nothing to do")
    assert result.verdict.startswith("the job succeeded on attempt 1 in ")
    assert [s.title for s in result.steps] == [
        "1. State and attempts",
        "2. Queue",
        "3. Providers",
        "4. Workers on hodei.local",
        "5. Last events",
    ]
    assert [line.split()[1] for line in result.steps[4].lines] == [
        "JobCreated",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]

    text = run_cli(client.settings, "job", "diagnose", str(job.id))
    assert text.returncode == 0, text.stderr
    assert "verdict: the job succeeded" in text.stdout
    assert "5. Last events" in text.stdout
    as_json = run_cli(client.settings, "job", "diagnose", str(job.id), "--output", "json")
    assert json.loads(as_json.stdout)["code"] == "succeeded"
    missing = run_cli(client.settings, "job", "diagnose", "00000000-0000-4000-8000-00000000dead")
    assert missing.returncode == 3
    assert missing.stderr.strip() == ("hodei: error: no job 00000000-0000-4000-8000-00000000dead")
