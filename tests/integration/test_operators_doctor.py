"""``hodei doctor``: nothing on a healthy system with real jobs; each planted problem
found with its ids and a command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

from hodei import JobState
from hodei.domain.states import WorkerState
from hodei.sdk import Client
from hodei.services.operators.doctor import DoctorReport
from tests.integration.operators_plant import (
    HAPPY,
    add_job_event,
    plant_job,
    plant_token,
    plant_unhealthy_provider,
    plant_worker,
)
from tests.support import run_cli


def findings(report: DoctorReport, check: str) -> list[dict[str, str]]:
    return [f.ids for f in report.findings if f.check == check]


def test_a_healthy_system_with_real_jobs_has_no_findings(client: Client) -> None:
    ok = client.submit("echo ok")
    failed = client.submit("exit 4")
    assert client.wait(failed.id, timeout=60).state is JobState.FAILED
    retried = client.retry(failed.id)  # a manual retry from a terminal state is allowed
    waiting = client.submit("true", labels={"gpu": "true"})  # no provider: stays PENDING
    client.cancel(waiting.id)
    assert client.wait(ok.id, timeout=60).state is JobState.SUCCEEDED
    assert client.wait(retried.id, timeout=60).state is JobState.FAILED
    report = client.doctor()
    assert report.findings == [], [f.message for f in report.findings]
    assert report.healthy
    cli = run_cli(client.settings, "doctor")
    assert cli.returncode == 0, cli.stderr
    assert "no problems found" in cli.stdout


def test_history_problems_are_found_with_their_ids(client: Client) -> None:
    # QUEUED -> SUCCEEDED skips RUNNING: not an allowed transition.
    invalid = plant_job(
        client,
        state=JobState.SUCCEEDED,
        steps=[*HAPPY[:2], ("JobSucceeded", "QUEUED", "SUCCEEDED")],
    )
    # FAILED -> PENDING is only allowed as a manual retry.
    sneaky = plant_job(
        client,
        state=JobState.PENDING,
        steps=[*HAPPY[:3], ("JobFailed", "RUNNING", "FAILED")],
        age=timedelta(seconds=2),
    )
    add_job_event(client, sneaky, ("JobRetryScheduled", "FAILED", "PENDING"), manual=False)
    manual = plant_job(
        client, state=JobState.PENDING, steps=[*HAPPY[:3], ("JobFailed", "RUNNING", "FAILED")]
    )
    add_job_event(client, manual, ("JobRetryScheduled", "FAILED", "PENDING"), manual=True)
    # JobQueued is missing between JobCreated and JobStarted.
    gap = plant_job(client, state=JobState.RUNNING, steps=[HAPPY[0], HAPPY[2]])
    # The job is RUNNING but its events stop at QUEUED.
    silent = plant_job(client, state=JobState.RUNNING, steps=HAPPY[:2])
    bare = plant_job(client, state=JobState.SUCCEEDED)

    report = client.doctor()

    def jobs_in(check: str) -> set[str]:
        return {ids["job_id"] for ids in findings(report, check)}

    assert jobs_in("invalid_transition") == {str(invalid.id), str(sneaky.id)}
    assert jobs_in("event_gap") == {str(gap.id), str(silent.id)}
    assert jobs_in("job_without_events") == {str(bare.id)}
    assert str(manual.id) not in {f.ids.get("job_id") for f in report.findings}
    assert all(
        f.suggestion == f"hodei job timeline {f.ids['job_id']}"
        for f in report.findings
        if f.check in ("invalid_transition", "event_gap")
    )


def test_state_problems_are_found_with_their_ids(client: Client) -> None:
    stuck = plant_job(client, state=JobState.PENDING, steps=HAPPY[:1], age=timedelta(minutes=10))
    lost = plant_worker(client, state=WorkerState.LOST, heartbeat_age=timedelta(minutes=5))
    orphan = plant_job(client, state=JobState.RUNNING, steps=HAPPY[:3], worker=lost)
    never = plant_worker(client, state=WorkerState.PROVISIONING, heartbeat_age=None)
    token = plant_token(client, never, expires_in=-timedelta(minutes=10))
    silent = plant_worker(client, state=WorkerState.READY, heartbeat_age=timedelta(minutes=10))
    sick = plant_unhealthy_provider(client, name="flaky", since=timedelta(minutes=30))

    report = client.doctor()

    assert findings(report, "pending_unpublished") == [{"job_id": str(stuck.id)}]
    assert findings(report, "running_on_lost_worker") == [
        {"job_id": str(orphan.id), "worker_id": str(lost.id)}
    ]
    assert findings(report, "expired_token_unmarked") == [
        {"token_id": str(token.id), "worker_id": str(never.id)}
    ]
    assert findings(report, "worker_not_reaped") == [{"worker_id": str(silent.id)}]
    assert findings(report, "provider_unhealthy") == [
        {"provider_id": str(sick.id), "provider": "flaky"}
    ]
    assert not findings(report, "invalid_transition") and not findings(report, "event_gap")

    cli = run_cli(client.settings, "doctor", "--output", "json")
    assert cli.returncode == 1, cli.stderr
    out = json.loads(cli.stdout)
    assert out["healthy"] is False
    assert {f["check"] for f in out["findings"]} == {
        "pending_unpublished",
        "running_on_lost_worker",
        "expired_token_unmarked",
        "worker_not_reaped",
        "provider_unhealthy",
    }
    by_check = {f["check"]: f for f in out["findings"]}
    assert by_check["expired_token_unmarked"]["suggestion"] == (
        "hodei maintenance run --task expire_tokens"
    )
    text = run_cli(client.settings, "doctor")
    assert text.returncode == 1
    assert f"job_id={stuck.id}" in text.stdout and "try: hodei job diagnose" in text.stdout
    # The report is the output: no timestamped `WARNING hodei.services.operators.doctor` record too.
    assert text.stderr == "", text.stderr


def test_the_history_window_bounds_what_is_checked(client: Client) -> None:
    old = plant_job(
        client,
        state=JobState.SUCCEEDED,
        steps=[*HAPPY[:2], ("JobSucceeded", "QUEUED", "SUCCEEDED")],
        age=timedelta(days=3),
    )
    assert findings(client.doctor(), "invalid_transition") == []
    wide = client.doctor(since=timedelta(days=7))
    assert [ids["job_id"] for ids in findings(wide, "invalid_transition")] == [str(old.id)]


def test_a_running_job_its_worker_does_not_report_is_flagged(client: Client) -> None:
    """The worker heartbeats, but names no command or kept outcome for the job (issue
    15: it gave up writing the outcome and went on heartbeating as BUSY)."""
    from hodei.services.fleet.workers import WorkerReport, heartbeat

    worker = plant_worker(client, state=WorkerState.BUSY, heartbeat_age=timedelta(seconds=1))
    at = client.container.clock.now() - timedelta(seconds=5)
    forgotten = plant_job(
        client, state=JobState.RUNNING, steps=HAPPY[:3], worker=worker, started_at=at
    )
    running = plant_job(
        client, state=JobState.RUNNING, steps=HAPPY[:3], worker=worker, started_at=at
    )
    c = client.container
    heartbeat(c.store, c.clock, worker.id, report=lambda: WorkerReport((running.id,)))
    # Claimed after that heartbeat: the next one will name it, nothing to say yet.
    later = plant_job(
        client,
        state=JobState.RUNNING,
        steps=HAPPY[:3],
        worker=worker,
        started_at=c.clock.now() + timedelta(milliseconds=5),
    )

    report = client.doctor()

    assert findings(report, "running_without_command") == [
        {"job_id": str(forgotten.id), "worker_id": str(worker.id)}
    ]
    assert str(later.id) not in {f.ids.get("job_id") for f in report.findings}
    cli = run_cli(client.settings, "doctor", "--output", "json")
    assert cli.returncode == 1, cli.stderr
    assert "running_without_command" in {f["check"] for f in json.loads(cli.stdout)["findings"]}
