"""The whole life of jobs on PostgreSQL + Redis, with real worker processes."""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import pytest

from hodei import JobSpec, JobState
from hodei.domain.records import Job
from hodei.sdk import Client
from tests.support import job_events, process_group_alive, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The tests taking `lifecycle_client` run twice: on the SDK's local backend and over
# `hodei server` (HTTP, a submitter token), with the same assertions.

LIFECYCLE = ["JobCreated", "JobQueued", "JobStarted"]


def assert_plain_timeline(client: Client, job: Job, terminal: str) -> None:
    """JobCreated, JobQueued, JobStarted, then the terminal event, with the right actors."""
    events = job_events(client, job.id)
    assert [e.event_type for e in events] == [*LIFECYCLE, terminal]
    created, queued, started, finished = events
    assert created.actor == client.actor
    assert queued.actor == "system:dispatcher"
    assert started.actor == f"worker:{job.worker_id}"
    assert finished.actor == f"worker:{job.worker_id}"
    assert [e.payload["new_state"] for e in events] == [
        "PENDING",
        "QUEUED",
        "RUNNING",
        str(job.state),
    ]
    assert all(a.id < b.id for a, b in itertools.pairwise(events))


def test_fifty_jobs_all_succeed_with_their_output(lifecycle_client: Client) -> None:
    jobs = [lifecycle_client.submit(f"echo job-{i}", name=f"echo-{i}") for i in range(50)]
    for i, job in enumerate(jobs):
        done = lifecycle_client.wait(job.id, timeout=120)
        assert done.state is JobState.SUCCEEDED, done
        assert done.exit_code == 0
        assert [ln.line for ln in lifecycle_client.logs(job.id)] == [f"job-{i}"]
    assert_plain_timeline(lifecycle_client, lifecycle_client.get(jobs[0].id), "JobSucceeded")


def test_a_failing_command_keeps_its_exit_code_and_stderr(lifecycle_client: Client) -> None:
    job = lifecycle_client.submit("echo boom >&2; exit 3")
    done = lifecycle_client.wait(job.id, timeout=60)
    assert (done.state, done.exit_code, done.failure_reason) == (JobState.FAILED, 3, "nonzero_exit")
    assert [(ln.stream, ln.line) for ln in lifecycle_client.logs(job.id)] == [("stderr", "boom")]
    assert_plain_timeline(lifecycle_client, done, "JobFailed")


def test_a_timeout_ends_timed_out_and_kills_the_process_group(lifecycle_client: Client) -> None:
    job = lifecycle_client.submit("echo $$; sleep 60 & sleep 60", timeout_s=2)
    done = lifecycle_client.wait(job.id, timeout=60)
    assert (done.state, done.failure_reason) == (JobState.TIMED_OUT, "timeout")
    pgid = int(lifecycle_client.logs(job.id)[0].line)
    wait_for(lambda: not process_group_alive(pgid), timeout=5, message="group gone")
    assert_plain_timeline(lifecycle_client, done, "JobTimedOut")
    assert any(
        "SIGTERM" in ln.line for ln in lifecycle_client.logs(job.id) if ln.stream == "system"
    )


def test_a_retry_succeeds_on_attempt_two(lifecycle_client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt-done"
    job = lifecycle_client.submit(
        f"if [ -e {marker} ]; then echo second; else touch {marker}; exit 1; fi",
        max_attempts=2,
        retry={"backoff_s": 0},
    )
    done = lifecycle_client.wait(job.id, timeout=60)
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    kinds = [e.event_type for e in job_events(lifecycle_client, job.id)]
    assert kinds == [*LIFECYCLE, "JobRetryScheduled", "JobQueued", "JobStarted", "JobSucceeded"]
    with lifecycle_client.container.store.transaction() as tx:
        attempts = tx.attempts.search(job.id)
    assert [(a.attempt_no, a.state.value, a.exit_code) for a in attempts] == [
        (1, "FAILED", 1),
        (2, "SUCCEEDED", 0),
    ]


def test_cancelling_a_running_sleep(lifecycle_client: Client) -> None:
    import time

    job = lifecycle_client.submit("echo $$; exec sleep 60")
    wait_for(lambda: lifecycle_client.logs(job.id), timeout=30, message="job started")
    pid = int(lifecycle_client.logs(job.id)[0].line)
    started = time.monotonic()
    lifecycle_client.cancel(job.id)
    done = lifecycle_client.wait(job.id, timeout=10)
    assert time.monotonic() - started < 3
    assert (done.state, done.failure_reason) == (JobState.CANCELLED, "cancelled")
    wait_for(lambda: not process_group_alive(pid), timeout=3, message="process gone")
    kinds = [e.event_type for e in job_events(lifecycle_client, job.id)]
    assert kinds == [*LIFECYCLE, "JobCancelRequested", "JobCancelled"]


def test_cancelling_a_queued_job_is_immediate_and_it_never_runs(pg_client: Client) -> None:
    from hodei.services.jobs.submission import submit_jobs

    c = pg_client.container
    # Stored and published, but no worker is launched for it.
    [result] = submit_jobs(
        c.store, c.clock, c.publisher, [JobSpec.create("echo never")], actor="sdk:test"
    )
    wait_for(lambda: pg_client.get(result.job.id).state is JobState.QUEUED, message="queued")
    assert pg_client.cancel(result.job.id).state is JobState.CANCELLED
    follow = pg_client.submit("echo after")  # launches a worker, which drains the queue
    assert pg_client.wait(follow.id, timeout=60).state is JobState.SUCCEEDED
    assert pg_client.get(result.job.id).state is JobState.CANCELLED
    assert pg_client.logs(result.job.id) == []


def test_the_same_message_delivered_twice_runs_once(pg_client: Client, tmp_path: Path) -> None:
    from hodei.services.ports.publisher import Publication

    runs = tmp_path / "runs"
    job = pg_client.submit(f"echo ran >> {runs}; sleep 1")
    assert pg_client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    # Redeliver attempt 1 (as a broker would after a lost ack): the claim must drop it.
    pg_client.container.publisher.publish(Publication(job.id, 1, str(job.queue), job.name))
    second = pg_client.submit(f"echo other >> {tmp_path / 'other'}")
    assert pg_client.wait(second.id, timeout=60).state is JobState.SUCCEEDED
    assert runs.read_text().splitlines() == ["ran"]
    kinds = [e.event_type for e in job_events(pg_client, job.id)]
    assert kinds.count("JobStarted") == 1


def test_a_broker_outage_leaves_the_job_pending_until_dispatch(
    pg_settings, redis_url: str, tmp_path: Path
) -> None:
    import dataclasses

    from tests.conftest import stop_workers
    from tests.support import TcpProxy

    proxy = TcpProxy(6379)
    db = redis_url.rsplit("/", 1)[1]
    settings = dataclasses.replace(pg_settings, broker_url=f"redis://127.0.0.1:{proxy.port}/{db}")
    client = Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )
    try:
        job = client.submit("echo delivered")  # the proxy is not started: broker down
        assert client.get(job.id).state is JobState.PENDING
        kinds = [e.event_type for e in job_events(client, job.id)]
        assert kinds == ["JobCreated", "JobPublishFailed"]
        proxy.start()
        from tests.support import run_cli

        def dispatched() -> bool:
            # `maintenance run` publishes due PENDING jobs (the waiting worker's own
            # housekeeping may win that race; either way it is the same service).
            assert (
                run_cli(
                    settings,
                    "maintenance",
                    "run",
                    "--task",
                    "dispatch_pending",
                    "--task",
                    "provision",
                ).returncode
                == 0
            )
            return client.get(job.id).state is not JobState.PENDING

        wait_for(dispatched, timeout=30, interval=1, message="dispatch after the outage")
        done = client.wait(job.id, timeout=90)
        assert done.state is JobState.SUCCEEDED
        assert [ln.line for ln in client.logs(job.id)] == ["delivered"]
        kinds = [e.event_type for e in job_events(client, job.id)]
        assert kinds == [
            "JobCreated",
            "JobPublishFailed",
            "JobQueued",
            "JobStarted",
            "JobSucceeded",
        ]
    finally:
        stop_workers(client)
        proxy.stop()
        client.close()


def test_an_idempotency_key_returns_the_first_job(lifecycle_client: Client) -> None:
    key = f"nightly-{uuid.uuid4()}"
    first = lifecycle_client.submit("echo once", idempotency_key=key)
    again = lifecycle_client.submit("echo twice", idempotency_key=key)
    assert again.id == first.id
    many = lifecycle_client.submit_many(
        [JobSpec.create("echo x", idempotency_key=key), JobSpec.create("echo y")]
    )
    assert many[0].id == first.id and many[1].id != first.id
    assert len(lifecycle_client.list(name="echo once")) == 1


def test_submit_many_stores_and_queues_every_job(lifecycle_client: Client) -> None:
    specs = [JobSpec.create(f"echo {i}", correlation_id="batch-1") for i in range(20)]
    jobs = lifecycle_client.submit_many(specs)
    for job in jobs:
        assert lifecycle_client.wait(job.id, timeout=90).state is JobState.SUCCEEDED
    assert len(lifecycle_client.list(correlation_id="batch-1", limit=100)) == 20
    workflow = lifecycle_client.timeline(correlation_id="batch-1")
    assert {e.event_type for e in workflow if e.aggregate_type == "job"} == {
        "JobCreated",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    }


def test_retry_of_a_failed_job_is_a_new_attempt(lifecycle_client: Client) -> None:
    job = lifecycle_client.submit("exit 7")
    assert lifecycle_client.wait(job.id, timeout=60).state is JobState.FAILED
    lifecycle_client.retry(job.id)
    done = lifecycle_client.wait(job.id, timeout=60)
    assert (done.state, done.attempt, done.exit_code) == (JobState.FAILED, 2, 7)
    with lifecycle_client.container.store.transaction() as tx:
        assert [a.attempt_no for a in tx.attempts.search(job.id)] == [1, 2]
    retried = [
        e for e in job_events(lifecycle_client, job.id) if e.event_type == "JobRetryScheduled"
    ]
    assert retried[0].payload["manual"] is True


def test_list_filters_and_pages(lifecycle_client: Client) -> None:
    for i in range(5):
        lifecycle_client.submit(f"echo {i}", name="paged", correlation_id="pages")
    first = lifecycle_client.list(name="paged", limit=3)
    rest = lifecycle_client.list(name="paged", limit=3, before=first[-1])
    assert len(first) == 3 and len(rest) == 2
    assert not {j.id for j in first} & {j.id for j in rest}
    assert os.environ.get("HODEI_DATABASE_URL") is None  # tests never leak settings
