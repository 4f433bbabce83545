"""``hodei job timeline`` and ``hodei events list`` with real jobs, on SQLite and
PostgreSQL: the job's events with its worker's and token's, a whole workflow, JSON."""

from __future__ import annotations

import itertools
import json
import re
import uuid

from hodei import JobState
from hodei.sdk import Client
from tests.support import run_cli

JOB_EVENTS = ["JobCreated", "JobQueued", "JobStarted", "JobSucceeded"]
WORKER_EVENTS = ["WorkerProvisioning", "WorkerRegistered", "WorkerReady"]
TOKEN_EVENTS = ["TokenIssued", "TokenConsumed"]


def test_a_job_timeline_has_its_worker_and_token_and_a_workflow_has_all_jobs(
    client: Client,
) -> None:
    flow = f"wf-{uuid.uuid4().hex[:8]}"
    first = client.submit("echo one", correlation_id=flow)
    second = client.submit("echo two", correlation_id=flow)
    other = client.submit("echo other")
    for job in (first, second, other):
        assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    done = client.get(first.id)

    events = client.timeline(first.id)
    ids = [e.id or 0 for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    own = [e.event_type for e in events if e.aggregate_id == first.id]
    assert own == JOB_EVENTS
    worker_events = [e.event_type for e in events if e.aggregate_id == done.worker_id]
    assert worker_events[: len(WORKER_EVENTS)] == WORKER_EVENTS
    tokens = [e for e in events if e.aggregate_type == "token"]
    assert [e.event_type for e in tokens] == TOKEN_EVENTS
    assert {e.payload["worker_id"] for e in tokens} == {str(done.worker_id)}
    assert [e.event_type for e in client.timeline(first.id, related=False)] == JOB_EVENTS

    workflow = client.timeline(correlation_id=flow)
    jobs_in_flow = {e.aggregate_id for e in workflow if e.aggregate_type == "job"}
    assert jobs_in_flow == {first.id, second.id}
    assert all(a.id < b.id for a, b in itertools.pairwise(workflow))  # type: ignore[operator]


def test_the_timeline_cli_prints_milliseconds_and_json(client: Client) -> None:
    job = client.submit("echo hi", correlation_id="cli-flow")
    assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED

    text = run_cli(client.settings, "job", "timeline", str(job.id))
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["TIME", "EVENT", "ENTITY", "ACTOR", "CORRELATION_ID", "SUMMARY"]
    created = next(r for r in rows if " JobCreated " in r)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  JobCreated ", created), created
    assert "cli-flow" in created and "∅→PENDING" in created
    finished = next(r for r in rows if " JobSucceeded " in r)
    assert "RUNNING→SUCCEEDED" in finished and "exit_code=0" in finished
    assert any(" TokenConsumed " in r for r in rows)

    as_json = run_cli(client.settings, "job", "timeline", str(job.id), "--output", "json")
    events = json.loads(as_json.stdout)
    assert {"occurred_at", "event_type", "actor", "correlation_id", "payload"} <= set(events[0])
    assert [e["event_type"] for e in events if e["aggregate_id"] == str(job.id)] == JOB_EVENTS
    flow = run_cli(
        client.settings, "job", "timeline", "--correlation-id", "cli-flow", "--output", "json"
    )
    assert str(job.id) in {e["aggregate_id"] for e in json.loads(flow.stdout)}


def test_events_list_filters(client: Client) -> None:
    ok = client.submit("true", correlation_id="list-flow")
    bad = client.submit("exit 2")
    client.wait(ok.id, timeout=60)
    client.wait(bad.id, timeout=60)

    def listed(*args: str) -> list[dict[str, object]]:
        result = run_cli(client.settings, "events", "list", "--output", "json", *args)
        assert result.returncode == 0, result.stderr
        out: list[dict[str, object]] = json.loads(result.stdout)
        return out

    failed = listed("--type", "JobFailed", "--since", "5m")
    assert [e["aggregate_id"] for e in failed] == [str(bad.id)]
    assert [e["event_type"] for e in listed("--aggregate", str(ok.id))] == [
        "JobCreated",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]
    assert {e["aggregate_id"] for e in listed("--correlation-id", "list-flow")} == {str(ok.id)}
    latest = listed("--limit", "3")
    everything = listed("--from-id", "1", "--limit", "10000")
    assert latest == everything[-3:]
    assert listed("--since", "2999-01-01T00:00:00") == []
    wrong = run_cli(client.settings, "events", "list", "--since", "yesterday")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("hodei: error: --since must be a duration")


def test_a_warm_worker_s_launch_is_not_in_a_later_job_s_timeline(client: Client) -> None:
    client.update_provider("local", max_workers=1)  # the second job runs on the first's worker
    first = client.submit("true")
    assert client.wait(first.id, timeout=60).state is JobState.SUCCEEDED
    second = client.submit("true")
    done = client.wait(second.id, timeout=60)
    assert done.worker_id is not None and done.worker_id == client.get(first.id).worker_id

    events = client.timeline(second.id)

    assert (events[0].event_type, events[0].aggregate_id) == ("JobCreated", second.id)
    launch = {*WORKER_EVENTS, *TOKEN_EVENTS}
    assert [e.event_type for e in events if e.event_type in launch] == []
    # The first job, whose worker was launched for it, still shows the launch.
    first_events = {e.event_type for e in client.timeline(first.id)}
    assert launch <= first_events
