"""Input the SDK and the CLI refuse with hodei's own one-line error (and exit code),
on SQLite and on PostgreSQL: nothing reaches the database that it would refuse."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from hodei.domain.specs import JobSpec
from hodei.errors import HodeiError, InvalidInput, InvalidJobSpec, ProviderNotFound
from hodei.sdk import Client
from tests.support import run_cli


def test_an_unknown_provider_is_refused_at_submit_and_nothing_is_stored(client: Client) -> None:
    with pytest.raises(ProviderNotFound) as raised:
        client.submit("true", provider="nope")
    assert raised.value.exit_code == 3
    assert str(raised.value) == "no provider named 'nope' (`hodei provider list` shows them)"
    with pytest.raises(ProviderNotFound):
        client.submit_many([JobSpec.create("true"), JobSpec.create("true", provider="nope")])
    assert client.list() == []
    assert client.events(types=["JobCreated"]) == []


def test_a_spec_built_by_hand_is_validated_at_submit(client: Client) -> None:
    # Built without create(): on PostgreSQL the NUL reached the database (DataError).
    with pytest.raises(InvalidJobSpec, match="name must not contain NUL bytes"):
        client.submit(JobSpec(name="bad\x00", command="true"))
    with pytest.raises(InvalidJobSpec, match="expected a JobSpec, got str"):
        client.submit_many(["true"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="not both"):
        client.submit(JobSpec.create("true"), name="other")
    assert client.list() == []


# Arguments are checked before the job is looked up, so no job (nor worker) is needed.
_NO_JOB = "00000000-0000-4000-8000-000000000000"

_BAD_QUERIES: list[tuple[str, Callable[[Client], Any], str]] = [
    ("list name", lambda c: c.list(name="a\x00"), "name must not contain NUL bytes"),
    ("list cid", lambda c: c.list(correlation_id="\ud800"), "correlation_id must be valid"),
    ("list state", lambda c: c.list(state=5), "state must be a state name"),  # type: ignore[arg-type]
    ("list limit", lambda c: c.list(limit=float("nan")), "limit must be a finite number"),  # type: ignore[arg-type]
    ("event type", lambda c: c.events(types=["Job\x00"]), "event type must not contain NUL"),
    (
        "event id",
        lambda c: c.events(after_id=10**30),
        "after_id must be at most 9223372036854775807",
    ),
    ("event limit", lambda c: c.events(limit=10**400), "limit must be between 1 and 10000"),
    ("since", lambda c: c.events(since="5m"), "since must be a timezone-aware datetime"),  # type: ignore[arg-type]
    ("timeline", lambda c: c.timeline(correlation_id="\x00"), "correlation_id must not"),
    ("provider", lambda c: c.provider("lo\x00cal"), "provider name must not contain NUL"),
    ("disable", lambda c: c.disable_provider("\udcff"), "provider name must be valid UTF-8"),
    ("wait", lambda c: c.wait(_NO_JOB, timeout=float("nan")), "timeout must be"),
    ("poll", lambda c: c.wait(_NO_JOB, poll_s=float("inf")), "poll_s must be"),
]


@pytest.mark.parametrize(
    ("call", "message"), [q[1:] for q in _BAD_QUERIES], ids=[q[0] for q in _BAD_QUERIES]
)
def test_a_query_the_database_cannot_take_is_refused(
    client: Client, call: Callable[[Client], Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        call(client)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_provider_name_with_a_trailing_newline_is_refused(client: Client) -> None:
    with pytest.raises(HodeiError, match="provider name 'dock\\\\n' is not valid"):
        client.add_provider("dock\n", "local")
    with pytest.raises(HodeiError, match=r"health_check\.interval_s must be a positive number"):
        client.add_provider("nan", "local", health_check={"interval_s": float("nan")})
    with pytest.raises(HodeiError, match=r"config\.image must not contain NUL bytes"):
        client.add_provider("nul", "docker", config={"image": "a\x00b"})
    with pytest.raises(HodeiError, match=r"config\.n must be a finite number, got nan"):
        client.add_provider("nan", "docker", config={"image": "a", "n": float("nan")})
    with pytest.raises(HodeiError) as raised:
        client.add_provider("nl", "docker", config={"image": "a", "b\nc": 1})
    assert str(raised.value) == "invalid docker config: unknown field 'b\\nc'"
    with pytest.raises(HodeiError, match="config must be a mapping, got str"):
        client.add_provider("str", "docker", config="image=a")
    with pytest.raises(HodeiError, match="unknown field\\(s\\) max_wrokers"):
        client.add_provider("typo", "local", max_wrokers=1)
    assert [p.provider.name for p in client.providers()] == ["local"]


@pytest.mark.slow
def test_the_cli_refuses_an_unknown_provider_with_exit_3(client: Client) -> None:
    done = run_cli(client.settings, "job", "submit", "--provider", "nope", "--", "true")
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.splitlines() == [
        "hodei: error: no provider named 'nope' (`hodei provider list` shows them)"
    ]


def test_an_unknown_event_type_is_one_line_naming_the_types(client: Client) -> None:
    client.submit("true", run_at=timedelta(hours=1))  # a JobCreated and a JobHeld
    with pytest.raises(InvalidInput, match="unknown event type 'NoSuchEvent'; use one of Job"):
        client.events(types=["NoSuchEvent"])
    with pytest.raises(InvalidInput, match="unknown event type 'nosuch'"):
        client.follow_events(types=["nosuch"])
    # Case does not matter: a type is named as `events list` prints it, or in lowercase.
    assert {e.event_type for e in client.events(types=["jobheld"])} == {"JobHeld"}
    assert len(client.events(types=None)) >= 2  # None: every type, as no types
    settings = client.settings
    for args in (("list", "--type", "NoSuchEvent"), ("follow", "--type", "NoSuchEvent")):
        result = run_cli(settings, "events", *args, timeout=60)  # follow used to wait forever
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "use one of JobCreated, JobQueued" in lines[0], lines
    result = run_cli(settings, "events", "list", "--type", "jobheld")
    assert result.returncode == 0 and "JobHeld" in result.stdout, result.stderr
    assert "JobCreated" not in result.stdout


def test_the_sdk_names_a_wrong_argument_type_in_one_line(client: Client) -> None:
    job_id = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(InvalidInput, match="after must be a list of job ids, got str"):
        client.submit("true", after=job_id)
    with pytest.raises(InvalidInput, match="after must be a list of job ids, got UUID"):
        client.submit("true", after=uuid.UUID(job_id))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="0 is a batch index, only meaningful in submit_many"):
        client.submit("true", after=[0])
    with pytest.raises(InvalidJobSpec, match="after index 0 is the job itself"):
        client.submit_many([JobSpec.create("true", after=[0])])
    with pytest.raises(InvalidInput, match="home must be a path, got int"):
        Client.from_env(home=123)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="types must be a list of event type names"):
        client.events(types=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="an event type must be a string, got NoneType"):
        client.events(types=[None])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="before must be a Job"):
        client.list(before=job_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="after_key must be a"):
        client.list(after_key=job_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="options must be a FollowOptions"):
        client.follow_events(options="fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="since must be a timedelta"):
        client.doctor(since="1h")  # type: ignore[arg-type]
    assert client.list() == []
