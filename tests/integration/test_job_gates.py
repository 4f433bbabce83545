"""When and in what order jobs run (services/jobs/gates.py): run later, concurrency keys,
dependencies, priorities; with real workers, brokers and databases."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hodei import JobSpec, JobState
from hodei.domain.records import Job
from hodei.errors import InvalidJobSpec, JobNotFound
from hodei.sdk import Client
from hodei.settings import Settings
from tests.support import hodei_env, job_events, run_cli, wait_for


def _events(client: Client, job: Job) -> list[str]:
    return [e.event_type for e in job_events(client, job.id)]


def _event(client: Client, job: Job, event_type: str) -> datetime:
    return next(e.occurred_at for e in job_events(client, job.id) if e.event_type == event_type)


@pytest.fixture
def scheduler(pg_client: Client) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hodei", "scheduler"],
        env=hodei_env(pg_client.settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


# -- 1. run later -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_due_later_waits_held_and_the_scheduler_publishes_it_within_a_second(
    pg_client: Client, scheduler: subprocess.Popen[bytes]
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=8)
    job = pg_client.submit("echo later", run_at=run_at)
    assert (job.state, job.held, job.hold_until) == (JobState.PENDING, True, run_at)
    diagnosis = pg_client.diagnose(job.id)
    assert diagnosis.code == "waiting_due", diagnosis.verdict
    assert "hodei job release" in diagnosis.action
    shown = run_cli(pg_client.settings, "job", "show", str(job.id), "--output", "json")
    assert json.loads(shown.stdout)["run_at"] == run_at.isoformat(timespec="milliseconds")
    done = pg_client.wait(job.id, timeout=90)
    assert done.state is JobState.SUCCEEDED
    released = _event(pg_client, job, "JobReleased")
    assert run_at <= released < run_at + timedelta(seconds=1), released - run_at
    assert done.started_at is not None and done.started_at >= run_at
    assert _events(pg_client, job)[:3] == ["JobCreated", "JobHeld", "JobReleased"]


def test_job_run_in_on_the_embedded_default_publishes_its_own_job_when_due(
    embedded_settings: Settings,
) -> None:
    began = datetime.now(UTC)
    # 6 s, not 2: the CLI must still be before the due time when it has stored the job,
    # which a loaded CI machine (a second or more to start a CLI) made fail at 2 s.
    done = run_cli(embedded_settings, "job", "run", "--in", "6s", "--", "echo ran")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"
    assert "waits: the job waits for its due time" in done.stderr
    with Client.from_env(**_fields(embedded_settings)) as client:
        [job] = client.list()
        assert job.spec.run_at is not None and job.spec.run_at >= began + timedelta(seconds=6)
        assert _event(client, job, "JobReleased") >= job.spec.run_at


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--at", "soonish"], 2, "--at: not a time: 'soonish'"),
        (["--in", "ten minutes"], 2, "--in: not a duration"),
        (["--at", "12:00", "--in", "1m"], 2, "give --at or --in, not both"),
        (["--priority", "12"], 2, "priority must be between 0 and 9, got 12"),
        (["--concurrency-key", "k", "--max-concurrency", "0"], 2, "max_concurrency must be"),
        (["--max-concurrency", "2"], 2, "max_concurrency needs a concurrency_key"),
        (["--after", "nope"], 2, "after: not a job id: 'nope'"),
        (["--after", str(uuid.UUID(int=7))], 3, f"after: no job {uuid.UUID(int=7)}"),
        (["--after-any"], 2, "after_any needs after"),
    ],
)
def test_bad_gates_are_one_line_errors_and_store_nothing(
    embedded_settings: Settings, args: list[str], code: int, message: str
) -> None:
    done = run_cli(embedded_settings, "job", "submit", *args, "--", "true")
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    listed = run_cli(embedded_settings, "job", "list", "--output", "json")
    assert json.loads(listed.stdout) == []


def test_a_dependency_cycle_in_a_batch_is_refused(embedded_client: Client) -> None:
    specs = [JobSpec.create("true", after=[1]), JobSpec.create("true", after=[0])]
    with pytest.raises(InvalidJobSpec, match=r"cycle \(jobs 0 -> 1 -> 0\)"):
        embedded_client.submit_many(specs)
    with pytest.raises(InvalidJobSpec, match="not a job of this batch"):
        embedded_client.submit_many([JobSpec.create("true", after=[5])])
    with pytest.raises(JobNotFound):
        embedded_client.submit("true", after=[uuid.uuid4()])
    assert embedded_client.list() == []


# -- 5. dependencies ----------------------------------------------------------------------


def test_a_failed_dependency_cancels_its_dependents_unless_after_any(
    embedded_client: Client,
) -> None:
    client = embedded_client
    root, child, grandchild, anyway = client.submit_many(
        [
            JobSpec.create("exit 3"),
            JobSpec.create("echo child", after=[0]),
            JobSpec.create("echo grandchild", after=[1], correlation_id="wf"),
            JobSpec.create("echo anyway", after=[0], after_any=True),
        ]
    )
    assert client.diagnose(child.id).code == "waiting_dependencies"
    assert client.wait(root.id, timeout=60).state is JobState.FAILED
    assert client.wait(anyway.id, timeout=60).state is JobState.SUCCEEDED
    for job in (child, grandchild):
        ended = client.wait(job.id, timeout=30)
        assert (ended.state, ended.failure_reason) == (JobState.CANCELLED, "dependency_failed")
        assert "JobStarted" not in _events(client, job)
    assert client.diagnose(child.id).code == "dependency_failed"
    timeline = run_cli(client.settings, "job", "timeline", "--correlation-id", "wf")
    assert "JobHeld" in timeline.stdout and str(child.id) in timeline.stdout
    # `job run` after a failed job: cancelled at once, and not announced as waiting.
    late = run_cli(client.settings, "job", "run", "--after", str(root.id), "--", "echo no")
    assert late.returncode == 130, late.stderr
    assert "waits:" not in late.stderr and "dependency_failed" in late.stderr, late.stderr


@pytest.mark.slow
def test_a_1000_job_fan_out_fan_in_graph_runs_in_order_each_job_once(
    pg_client: Client,
) -> None:
    client = pg_client
    client.update_provider("local", max_workers=4)
    width = 998
    specs = [JobSpec.create("true", name="root", correlation_id="fan")]
    specs += [
        JobSpec.create("true", name=f"mid-{n}", after=[0], correlation_id="fan")
        for n in range(width)
    ]
    specs.append(
        JobSpec.create("true", name="sink", after=list(range(1, width + 1)), correlation_id="fan")
    )
    jobs = client.submit_many(specs)
    sink = client.wait(jobs[-1].id, timeout=600)
    assert sink.state is JobState.SUCCEEDED
    done = {j.id: client.get(j.id) for j in jobs}
    assert all(j.state is JobState.SUCCEEDED and j.attempt == 1 for j in done.values())
    with client.container.store.reading() as tx:
        started = [e for e in tx.events.search(_starts(jobs)) if e.event_type == "JobStarted"]
    assert sorted(e.aggregate_id for e in started) == sorted(j.id for j in jobs)  # once each
    root, mids, last = done[jobs[0].id], [done[j.id] for j in jobs[1:-1]], done[sink.id]
    assert root.finished_at is not None and last.started_at is not None
    assert all(m.started_at and m.started_at >= root.finished_at for m in mids)
    assert all(m.finished_at and m.finished_at <= last.started_at for m in mids)


def _starts(jobs: list[Job]) -> object:
    from hodei.services.ports.store import EventQuery

    return EventQuery(
        event_types=["JobStarted"], aggregate_ids=[j.id for j in jobs], limit=len(jobs) * 2
    )


# -- 4. concurrency keys ------------------------------------------------------------------


@pytest.mark.slow
def test_a_concurrency_key_runs_exactly_n_at_once_under_a_race_of_50_submits(
    pg_client: Client,
) -> None:
    client = pg_client
    client.update_provider("local", max_workers=4)
    # Four busy workers first, so the keyed jobs race across all of them.
    warm = client.submit_many([JobSpec.create("sleep 2") for _ in range(4)])
    wait_for(
        lambda: all(client.get(j.id).state is JobState.RUNNING for j in warm),
        timeout=60,
        message="four workers busy",
    )
    limit = 2

    def submit(n: int) -> Job:
        return client.submit(
            "sleep 0.3", name=f"keyed-{n}", concurrency_key="deploy-prod", max_concurrency=limit
        )

    with ThreadPoolExecutor(max_workers=10) as pool:
        keyed = list(pool.map(submit, range(50)))
    waiting = [j for j in keyed if client.get(j.id).held]
    assert waiting and client.diagnose(waiting[-1].id).code == "waiting_concurrency"
    done = [client.wait(j.id, timeout=300) for j in keyed]
    assert all(j.state is JobState.SUCCEEDED for j in done)
    assert _most_at_once(done) == limit
    workers = {j.worker_id for j in done}
    assert len(workers) > 1, "the keyed jobs ran on more than one worker"


def _most_at_once(jobs: list[Job]) -> int:
    edges = []
    for j in jobs:
        assert j.started_at is not None and j.finished_at is not None
        edges += [(j.started_at, 1), (j.finished_at, -1)]
    # At the same instant an end comes before a start: a slot freed, then taken.
    edges.sort(key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return most


def test_the_next_job_of_a_key_starts_within_a_second_of_the_slot_freeing(
    pg_client: Client,
) -> None:
    """Issue 21, item 4: no polling delay beyond a second. The worker that ends a key's
    job releases the next in its finishing path; no scheduler runs here to do it."""
    client = pg_client
    client.update_provider("local", max_workers=1)
    warm = client.submit("true")
    assert client.wait(warm.id, timeout=60).state is JobState.SUCCEEDED  # a warm worker
    first = client.submit("sleep 1", concurrency_key="slot", max_concurrency=1)
    second = client.submit("true", concurrency_key="slot", max_concurrency=1)
    assert not first.held and second.held
    done = client.wait(second.id, timeout=60)
    freed = client.get(first.id).finished_at
    assert done.state is JobState.SUCCEEDED
    assert freed is not None and done.started_at is not None
    assert timedelta(0) <= done.started_at - freed < timedelta(seconds=1), done.started_at - freed


def test_a_dependent_submitted_while_its_parent_runs_goes_when_the_parent_ends(
    pg_client: Client, tmp_path: Path
) -> None:
    """The parent's end releases it (its row's has_dependents, set by the submit, comes
    back from the finish); no scheduler runs here to sweep for it."""
    client = pg_client
    gate = tmp_path / "go"
    parent = client.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    wait_for(lambda: client.get(parent.id).state is JobState.RUNNING, timeout=60, message="run")
    child = client.submit("echo child", after=[parent.id])
    plain = client.submit("echo plain")
    assert client.get(child.id).held
    gate.touch()
    assert client.wait(child.id, timeout=60).state is JobState.SUCCEEDED
    assert client.wait(plain.id, timeout=60).state is JobState.SUCCEEDED
    assert (client.get(parent.id).has_dependents, client.get(plain.id).has_dependents) == (
        True,
        False,
    )


def test_a_concurrency_key_on_the_embedded_default_holds_the_second_job(
    embedded_client: Client,
) -> None:
    client = embedded_client
    first = client.submit("sleep 1", concurrency_key="one")
    second = client.submit("echo second", concurrency_key="one")
    assert not first.held and client.get(second.id).held
    status = client.status()
    assert status.waiting["concurrency"] == 1
    done = client.wait(second.id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    finished = client.get(first.id).finished_at
    assert finished is not None and done.started_at is not None
    assert done.started_at >= finished


# -- 3. priorities ------------------------------------------------------------------------


def _priority_race(client: Client, tmp_path: Path) -> None:
    """One busy worker, 200 waiting low-priority jobs, then one high-priority job: the
    high one starts next."""
    provider = f"prio{uuid.uuid4().hex[:8]}"
    client.add_provider(provider, "local", max_workers=1)
    gate = tmp_path / "go"
    busy = client.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done", provider=provider)
    wait_for(lambda: client.get(busy.id).state is JobState.RUNNING, timeout=60, message="busy")
    low = client.submit_many(
        [JobSpec.create("true", provider=provider, priority=0) for _ in range(200)]
    )
    high = client.submit("true", provider=provider, priority=9)
    wait_for(
        lambda: all(client.get(j.id).state is JobState.QUEUED for j in (*low[-5:], high)),
        message="all queued",
    )
    assert client.diagnose(low[-1].id).code == "waiting_priority"
    assert client.status().waiting["priority"] == 200
    gate.touch()
    first_low = client.wait(low[0].id, timeout=120)
    started_high = client.wait(high.id, timeout=120).started_at
    assert started_high is not None and first_low.started_at is not None
    assert started_high < first_low.started_at
    nexts = [e for e in client.list(limit=300) if e.started_at and e.id != busy.id]
    assert min(nexts, key=lambda j: j.started_at or datetime.max.replace(tzinfo=UTC)).id == high.id


def test_a_high_priority_job_submitted_last_starts_next_on_the_embedded_default(
    embedded_client: Client, tmp_path: Path
) -> None:
    _priority_race(embedded_client, tmp_path)


@pytest.mark.slow
def test_a_high_priority_job_submitted_last_starts_next_on_redis(
    pg_client: Client, tmp_path: Path
) -> None:
    _priority_race(pg_client, tmp_path)


@pytest.mark.slow
def test_a_high_priority_job_submitted_last_starts_next_on_rabbitmq(
    pg_settings: Settings, rabbitmq_url: str, tmp_path: Path
) -> None:
    settings = dataclasses.replace(pg_settings, broker_url=rabbitmq_url)
    with Client.from_env(**_fields(settings)) as client:
        try:
            _priority_race(client, tmp_path)
        finally:
            _stop_workers(client)


def _fields(settings: Settings) -> dict[str, object]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def _stop_workers(client: Client) -> None:
    from tests.conftest import stop_workers

    stop_workers(client)


# -- over the HTTP API --------------------------------------------------------------------


def test_gates_go_over_the_http_api_and_its_client(embedded_settings: Settings) -> None:
    from tests.api_server import running_server

    with running_server(embedded_settings) as server:
        client = server.client("submitter")
        later = client.submit("echo later", run_at=timedelta(hours=1), priority=7)
        assert (later.held, later.priority, later.spec.run_at is not None) == (True, 7, True)
        assert client.diagnose(later.id).code == "waiting_due"
        first, second = client.submit_many(
            [
                JobSpec.create("echo first", concurrency_key="api", max_concurrency=1),
                JobSpec.create("echo second", after=[0]),
            ]
        )
        assert second.spec.after == (first.id,)
        assert client.wait(second.id, timeout=60).state is JobState.SUCCEEDED
        released = client.release(later.id)
        assert not released.held
        assert client.wait(later.id, timeout=60).state is JobState.SUCCEEDED
        actor = _released_by(client, later)
        assert actor == "api:test-submitter"


def _released_by(client: Client, job: Job) -> str:
    return next(e.actor for e in job_events(client, job.id) if e.event_type == "JobReleased")
