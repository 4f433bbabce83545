"""The job commands take the 8-hex-digit ids that timelines print, or any longer unique
start of an id; an ambiguous or unknown one is a one-line error (issue 16's trial)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import InvalidInput, JobNotFound, NotFound
from hodei.sdk import Client
from tests.support import run_cli


def _job_with_id(client: Client, job_id: str) -> uuid.UUID:
    """A PENDING job with the id given, straight into the store (no worker needed)."""
    spec = JobSpec.create(["true"], name="prefix")
    now = datetime.now(UTC)
    job = Job(uuid.UUID(job_id), "prefix", JobState.PENDING, spec, now, now, queue="hodei.local")
    with client.container.store.transaction() as tx:
        tx.jobs.add(job)
    return job.id


def test_job_commands_accept_a_unique_prefix(client: Client) -> None:
    job_id = _job_with_id(client, "0e4fef48-151d-4d12-81c8-901116aed465")
    settings = client.settings
    for args in (
        ("job", "show", "0e4fef48"),
        ("job", "show", "0E4FEF48-151D"),
        ("job", "timeline", "0e4fef48"),
        ("job", "logs", "0e4fef48"),
        ("job", "diagnose", "0e4fef48"),
    ):
        result = run_cli(settings, *args)
        assert result.returncode == 0, (args, result.stderr)
        if args[1] in ("show", "diagnose"):
            assert str(job_id) in result.stdout
    result = run_cli(settings, "job", "cancel", "0e4fef48")
    assert result.returncode == 0, result.stderr
    assert client.get("0e4fef48").state.value == "CANCELLED"


def test_an_ambiguous_unknown_or_short_prefix_is_one_line(client: Client) -> None:
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000001")
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000002")
    settings = client.settings
    cases = {
        "abcdef12": (2, "more than one job id starts with abcdef12"),
        "abcdef12-0000-4000-8000-00000000000": (2, "more than one job id starts with"),
        "deadbeef": (3, "no job id starts with deadbeef"),
        "abcdef1": (2, "at least its first 8 hex digits"),
        "abcdefgh": (2, "not a job id"),
    }
    for prefix, (code, message) in cases.items():
        commands = ("show", "timeline", "cancel", "retry", "logs", "diagnose")
        for command in commands if prefix == "abcdef12" else ("show",):
            result = run_cli(settings, "job", command, prefix)
            assert result.returncode == code, (command, prefix, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (command, prefix, lines)
    one = client.get("abcdef12-0000-4000-8000-000000000001")  # more digits: unique
    assert one.id == uuid.UUID("abcdef12-0000-4000-8000-000000000001")
    with pytest.raises(InvalidInput):
        client.get("abcdef12")
    with pytest.raises(JobNotFound):
        client.wait("deadbeef", timeout=1)


def test_after_and_events_aggregate_take_a_unique_prefix(client: Client) -> None:
    dep_id = _job_with_id(client, "0e4fef48-151d-4d12-81c8-901116aed465")
    settings = client.settings
    result = run_cli(settings, "job", "submit", "--after", "0e4fef48", "--", "echo", "dep")
    assert result.returncode == 0, result.stderr
    [waiting] = [j for j in client.list() if j.id != dep_id]
    assert waiting.spec.after == (dep_id,)  # stored whole, as show and timeline print it
    assert client.submit("true", after=["0E4FEF48-151d"]).spec.after == (dep_id,)
    short = str(waiting.id)[:8]
    result = run_cli(settings, "events", "list", "--aggregate", short)
    assert result.returncode == 0, result.stderr
    assert "JobCreated" in result.stdout
    events = client.events(aggregate_id=short)
    assert events and {e.aggregate_id for e in events} == {waiting.id}


def test_an_ambiguous_or_unknown_prefix_in_after_or_aggregate_is_one_line(client: Client) -> None:
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000001")
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000002")
    cases = [
        (("job", "submit", "--after", "abcdef12", "--", "true"), 2, "more than one job id"),
        (("job", "submit", "--after", "deadbeef", "--", "true"), 3, "no job id starts with"),
        (("job", "submit", "--after", "abcdefgh", "--", "true"), 2, "not a job id"),
        (("events", "list", "--aggregate", "abcdef12"), 2, "more than one job id"),
        (("events", "list", "--aggregate", "deadbeef"), 3, "no job or worker id starts with"),
        (("events", "follow", "--aggregate", "abcdef12"), 2, "more than one job id"),
    ]
    for args, code, message in cases:
        result = run_cli(client.settings, *args, timeout=60)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)
    assert len(client.list()) == 2  # nothing submitted


@pytest.mark.postgres
@pytest.mark.redis
def test_the_sdk_resolves_prefixes_locally_and_over_the_api(lifecycle_client: Client) -> None:
    client = lifecycle_client
    dep = client.submit("true", run_at=timedelta(hours=1))  # held: it stays PENDING
    short = str(dep.id)[:8]
    assert client.submit("true", after=[short]).spec.after == (dep.id,)
    assert {e.aggregate_id for e in client.events(aggregate_id=short)} == {dep.id}
    stream = client.follow_events(aggregate_id=short, from_id=1)
    try:
        assert next(stream).aggregate_id == dep.id
    finally:
        stream.close()
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000001")
    _job_with_id(client, "abcdef12-0000-4000-8000-000000000002")
    with pytest.raises(InvalidInput, match="more than one job id starts with abcdef12"):
        client.submit("true", after=["abcdef12"])
    with pytest.raises(JobNotFound, match="no job id starts with deadbeef"):
        client.submit("true", after=["deadbeef"])
    with pytest.raises(InvalidInput, match="more than one job id"):
        client.events(aggregate_id="abcdef12")
    with pytest.raises(NotFound, match="no job or worker id starts with deadbeef"):
        client.events(aggregate_id="deadbeef")
    with pytest.raises(InvalidInput, match="more than one job id"):
        next(client.follow_events(aggregate_id="abcdef12"))  # over HTTP, when it opens
