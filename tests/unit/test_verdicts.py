"""The diagnose verdict rules, decided from facts (no database)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hodei.domain.events import DomainEvent
from hodei.domain.records import Job, Provider, Worker
from hodei.domain.selection import Candidate, Requirements, select_provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderHealth, ProviderStatus, WorkerState
from hodei.services.operators.events_feed import summarize
from hodei.services.operators.verdicts import Facts, verdict_for

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LOCAL = Provider(
    id=uuid.uuid4(), name="local", provider_type="local", created_at=NOW, updated_at=NOW
)


def job(state: JobState, **fields: object) -> Job:
    base = Job(
        id=uuid.uuid4(),
        name="j",
        state=state,
        spec=JobSpec.create("true"),
        created_at=NOW - timedelta(minutes=5),
        updated_at=NOW - timedelta(minutes=5),
        attempt=1,
        max_attempts=1,
        provider_id=LOCAL.id,
        queue=LOCAL.queue,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def worker(state: WorkerState, heartbeat_ago: float | None = 1, **fields: object) -> Worker:
    base = Worker(
        id=uuid.uuid4(),
        name="w",
        provider_id=LOCAL.id,
        queue=LOCAL.queue,
        state=state,
        created_at=NOW - timedelta(minutes=10),
        updated_at=NOW,
        registered_at=None if state is WorkerState.PROVISIONING else NOW - timedelta(minutes=9),
        last_heartbeat=None if heartbeat_ago is None else NOW - timedelta(seconds=heartbeat_ago),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def facts(
    j: Job,
    workers: list[Worker] = (),  # type: ignore[assignment]
    providers: list[Provider] = (LOCAL,),  # type: ignore[assignment]
    events: list[DomainEvent] = (),  # type: ignore[assignment]
    job_worker: Worker | None = None,
) -> Facts:
    selection = select_provider(
        Requirements(j.spec.labels, j.spec.regions, j.spec.provider),
        [Candidate(p, len(workers)) for p in providers],
    )
    return Facts(
        now=NOW,
        job=j,
        attempts=[],
        providers=list(providers),
        selection=selection,
        queue_workers=list(workers),
        job_worker=job_worker,
        position=3,
        last_events=list(events),
        stale_after=timedelta(seconds=60),
    )


QUEUED_LONG = job(JobState.QUEUED, queued_at=NOW - timedelta(minutes=2))


@pytest.mark.parametrize(
    ("scenario", "code", "text"),
    [
        (facts(QUEUED_LONG), "no_worker", "queued on hodei.local for 2m 0s but no worker"),
        (
            facts(QUEUED_LONG, [worker(WorkerState.READY)]),
            "message_lost",
            "is idle on hodei.local but the job has waited 2m 0s",
        ),
        (
            facts(
                job(JobState.QUEUED, queued_at=NOW - timedelta(seconds=3)),
                [worker(WorkerState.READY)],
            ),
            "queued",
            "queued 3s ago",
        ),
        (
            facts(QUEUED_LONG, [worker(WorkerState.BUSY), worker(WorkerState.BUSY)]),
            "waiting_capacity",
            "all 2 worker(s) on hodei.local are busy and local is at max_workers=2; 3 job(s)",
        ),
        (
            facts(
                QUEUED_LONG,
                [
                    worker(
                        WorkerState.PROVISIONING,
                        None,
                        infra_ref="pid:1",
                        created_at=NOW - timedelta(minutes=1),
                    )
                ],
            ),
            "worker_starting",
            "is starting for hodei.local",
        ),
        (
            # Launched 10 minutes ago, past the 5-minute token lifetime: it died before
            # registering, and no scheduler has expired it yet. Not "starting, wait".
            facts(QUEUED_LONG, [worker(WorkerState.PROVISIONING, None, infra_ref="pid:1")]),
            "no_worker",
            "queued on hodei.local for 2m 0s but no worker serves that queue",
        ),
        (
            facts(QUEUED_LONG, [worker(WorkerState.READY, 300), worker(WorkerState.BUSY, 200)]),
            "stale_worker",
            "all 2 workers on hodei.local are silent; the most recent, ",
        ),
        (
            facts(QUEUED_LONG, providers=[replace(LOCAL, status=ProviderStatus.DISABLED)]),
            "no_worker",
            "provider local launches no worker (it is DISABLED)",
        ),
        (
            facts(job(JobState.PENDING, next_attempt_at=NOW - timedelta(minutes=1))),
            "not_published",
            "has been due for 1m 0s but is not on the broker",
        ),
        (facts(job(JobState.PENDING, updated_at=NOW)), "publishing", "being put on the broker"),
        (
            facts(
                job(
                    JobState.PENDING,
                    queue=None,
                    provider_id=None,
                    spec=JobSpec.create("true", regions=["mars"]),
                ),
                providers=[replace(LOCAL, allowed_regions=("earth",))],
            ),
            "no_provider",
            "no provider matches: local: regions earth do not include mars",
        ),
        (
            facts(job(JobState.PENDING, queue=None, provider_id=None)),
            "no_provider",
            "local matches now",
        ),
        (
            facts(job(JobState.TIMED_OUT, failure_reason="timeout")),
            "timed_out",
            "ran past its timeout of 3600s",
        ),
        (
            facts(
                job(JobState.FAILED, failure_reason="provisioning_failed", error="image_missing: x")
            ),
            "failed",
            "the job failed (provisioning_failed): image_missing: x",
        ),
    ],
)
def test_verdicts(scenario: Facts, code: str, text: str) -> None:
    verdict = verdict_for(scenario)
    assert verdict.code == code
    assert text in verdict.text, verdict.text
    assert verdict.action


def test_running_depends_on_its_worker() -> None:
    live = worker(WorkerState.BUSY)
    running = job(JobState.RUNNING, worker_id=live.id, started_at=NOW - timedelta(seconds=42))
    assert verdict_for(facts(running, job_worker=live)).text.startswith(
        f"running on worker {str(live.id)[:8]} for 42s"
    )
    frozen = replace(live, last_heartbeat=NOW - timedelta(minutes=4))
    assert verdict_for(facts(running, job_worker=frozen)).code == "stale_worker"
    lost = replace(live, state=WorkerState.LOST, termination_reason="no heartbeat")
    assert "which is LOST (no heartbeat)" in verdict_for(facts(running, job_worker=lost)).text
    asked = replace(running, cancel_requested_at=NOW - timedelta(seconds=2))
    assert verdict_for(facts(asked, job_worker=live)).code == "cancel_requested"


def test_an_unhealthy_provider_is_named() -> None:
    sick = replace(LOCAL, health=ProviderHealth.UNHEALTHY, health_message="socket refused")
    verdict = verdict_for(facts(QUEUED_LONG, providers=[sick]))
    assert "UNHEALTHY: socket refused" in verdict.text
    assert "hodei provider health local" in verdict.action


def test_cancelled_names_who_asked() -> None:
    asked = DomainEvent(
        event_type="JobCancelRequested",
        aggregate_type="job",
        aggregate_id=uuid.uuid4(),
        actor="cli:ana",
        occurred_at=NOW,
    )
    verdict = verdict_for(facts(job(JobState.CANCELLED), events=[asked]))
    assert verdict.text == "the job was cancelled by cli:ana"


def test_summaries_are_one_line() -> None:
    payload = {"old_state": "RUNNING", "new_state": "FAILED", "exit_code": 3, "error": "a\nb"}
    assert summarize("JobFailed", payload) == "RUNNING→FAILED exit_code=3 error=a b"
    reasons = {"reasons": {"local": "missing label gpu=true"}}
    assert summarize("JobUnschedulable", reasons) == "local: missing label gpu=true"
    health = {"old": "HEALTHY", "new": "UNHEALTHY", "message": "refused"}
    assert summarize("ProviderHealthChanged", health) == "health HEALTHY→UNHEALTHY message=refused"


def test_a_worker_without_heartbeat_is_described_as_such_not_as_heartbeating_never() -> None:
    from hodei.services.operators.verdicts import went_silent

    silent = worker(WorkerState.READY, None)
    assert went_silent(silent, NOW) == "has sent no heartbeat since it registered 9m 0s ago"
    unregistered = worker(WorkerState.READY, None, registered_at=None)
    assert went_silent(unregistered, NOW) == (
        "has neither registered nor sent a heartbeat (created 10m 0s ago)"
    )
    assert went_silent(worker(WorkerState.READY, 90), NOW) == "stopped heartbeating 1m 30s ago"
    assert (
        "never"
        not in verdict_for(
            facts(QUEUED_LONG, [worker(WorkerState.READY, None), worker(WorkerState.BUSY, None)])
        ).text
    )
