"""The transitions of hodei/domain/transitions.py: pure, and checked against the tables."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hodei.domain import transitions
from hodei.domain.events import Actor, EventType
from hodei.domain.records import Job, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import AttemptState, FailureReason, JobState, WorkerState
from hodei.errors import InvalidTransition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _job(state: JobState, attempt: int = 1) -> Job:
    spec = JobSpec.create(["true"], name="t")
    return Job(uuid.uuid4(), "t", state, spec, NOW, NOW, attempt=attempt, queue="hodei.local")


def _worker(state: WorkerState) -> Worker:
    return Worker(uuid.uuid4(), "w", None, "hodei.local", state, NOW, NOW)


def test_a_finish_ends_job_attempt_and_counts_the_worker_s_job() -> None:
    job, worker_id = _job(JobState.RUNNING, attempt=2), uuid.uuid4()
    ending = transitions.Ending(JobState.FAILED, FailureReason.NONZERO_EXIT, exit_code=3)
    t = transitions.finish(job, worker_id=worker_id, ending=ending, now=NOW)
    assert t.job is not None and t.attempt is not None and t.worker is not None
    assert (t.job.from_states, t.job.attempt, t.job.worker_id) == (
        {JobState.RUNNING},
        2,
        worker_id,
    )
    assert t.job.changes["state"] is JobState.FAILED
    assert t.attempt.changes["state"] is AttemptState.FAILED
    assert t.worker.count is transitions.WorkerCount.DONE
    [event] = t.events
    assert event.event_type == EventType.JOB_FAILED
    assert event.payload["old_state"] == "RUNNING" and event.payload["exit_code"] == 3
    assert transitions.after(job, t).state is JobState.FAILED


def test_a_retry_reopens_the_next_attempt_with_the_run_columns_cleared() -> None:
    job = replace(_job(JobState.RUNNING), started_at=NOW, deadline_at=NOW)
    due = NOW + timedelta(seconds=5)
    ending = transitions.Ending(JobState.FAILED, FailureReason.NONZERO_EXIT, exit_code=1)
    t = transitions.retry(job, worker_id=uuid.uuid4(), ending=ending, due=due, now=NOW)
    after = transitions.after(job, t)
    assert (after.state, after.attempt, after.next_attempt_at) == (JobState.PENDING, 2, due)
    assert after.started_at is None and after.deadline_at is None and after.worker_id is None
    assert [e.event_type for e in t.events] == [EventType.JOB_RETRY_SCHEDULED]


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.QUEUED])
def test_a_cancel_of_a_waiting_job_ends_it_and_a_queued_attempt(state: JobState) -> None:
    t = transitions.cancel(_job(state), actor="user:x", now=NOW)
    assert [e.event_type for e in t.events] == [
        EventType.JOB_CANCEL_REQUESTED,
        EventType.JOB_CANCELLED,
    ]
    assert (t.attempt is not None) == (state is JobState.QUEUED)


@pytest.mark.parametrize(
    "make",
    [
        lambda j: transitions.cancel(j, actor="user:x", now=NOW),
        lambda j: transitions.fail(j, reason=FailureReason.NO_PROVIDER, actor="a", now=NOW),
        lambda j: transitions.reopen(j, actor="user:x", now=NOW),
    ],
    ids=["cancel", "fail", "reopen"],
)
def test_a_change_the_table_forbids_is_refused(make: object) -> None:
    with pytest.raises(InvalidTransition):
        make(_job(JobState.SUCCEEDED))  # type: ignore[operator]


def test_only_a_finished_job_is_reopened_and_only_by_hand() -> None:
    with pytest.raises(InvalidTransition):
        transitions.reopen(_job(JobState.RUNNING), actor="user:x", now=NOW)
    t = transitions.reopen(_job(JobState.FAILED), actor="user:x", now=NOW)
    assert t.job is not None and t.job.manual_retry
    assert t.events[0].payload["manual"] is True


def test_fail_lost_keeps_the_attempt_lost() -> None:
    job, worker = _job(JobState.RUNNING), _worker(WorkerState.LOST)
    t = transitions.fail_lost(job, worker=worker, now=NOW)
    assert t.attempt is not None and t.attempt.changes["state"] is AttemptState.LOST
    assert t.events[0].payload["reason"] == str(FailureReason.WORKER_LOST)


def test_worker_transitions_follow_the_worker_table() -> None:
    terminated = _worker(WorkerState.TERMINATED)
    with pytest.raises(InvalidTransition):
        transitions.WorkerChange(
            terminated.id, frozenset({WorkerState.TERMINATED}), {"state": WorkerState.READY}
        )
    t = transitions.register(_worker(WorkerState.PROVISIONING), infra_ref="pid:1", now=NOW)
    assert [e.event_type for e in t.events] == [
        EventType.WORKER_REGISTERED,
        EventType.WORKER_READY,
    ]
    assert t.worker is not None and t.worker.changes["infra_ref"] == "pid:1"


def test_the_provider_s_handle_wins_over_the_worker_s_own() -> None:
    worker = replace(_worker(WorkerState.PROVISIONING), infra_ref="container:abc")
    t = transitions.register(worker, infra_ref="pid:7", now=NOW)
    assert t.worker is not None and t.worker.changes["infra_ref"] == "container:abc"


def test_a_provision_failure_writes_its_cause_first() -> None:
    worker = _worker(WorkerState.PROVISIONING)
    cause = transitions.lose(
        _worker(WorkerState.READY), silent_since=NOW, reason="x", now=NOW
    ).events[0]
    t = transitions.provision_failed(worker, reason="r", actor=Actor.REAPER, now=NOW, cause=cause)
    assert [e.event_type for e in t.events] == [
        EventType.WORKER_LOST,
        EventType.WORKER_PROVISION_FAILED,
    ]
