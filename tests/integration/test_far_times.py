"""A time too far off (near year 1 or 9999, or a delay of centuries) is one line of
InvalidInput (exit 2) from the SDK, the CLI and the API alike, never an internal error
from the store's conversion to UTC."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import httpx
import pytest

from hodei.errors import InvalidInput, InvalidJobSpec
from hodei.sdk import Client
from tests.api_server import ApiServer
from tests.support import run_cli

# In UTC this is 10000-01-01T22:59: no datetime holds it.
FAR_FUTURE = "9999-12-31T23:59:00-23:00"
FAR_PAST = "0001-01-01T00:00:00+23:00"


@pytest.mark.parametrize(
    "run_at",
    [
        FAR_FUTURE,
        FAR_PAST,
        datetime.fromisoformat(FAR_FUTURE),
        timedelta(days=10**6),  # was stored as year 4764
        timedelta(days=999_999_999),  # now + this overflows
        timedelta(days=101 * 365),
    ],
    ids=["iso-9999", "iso-0001", "datetime", "million-days", "max-timedelta", "101-years"],
)
def test_a_run_at_beyond_100_years_is_invalid_input(
    client: Client, run_at: datetime | timedelta | str
) -> None:
    with pytest.raises(InvalidJobSpec) as raised:
        client.submit("true", run_at=run_at)
    assert "run_at must be at most 100 years from now" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == 2
    assert client.list() == []


def test_a_run_at_99_years_ahead_is_stored(client: Client) -> None:
    job = client.submit("true", run_at=timedelta(days=99 * 365))
    assert job.spec.run_at is not None and job.spec.run_at.year >= 2100


def test_events_since_a_time_not_in_utc_range_is_invalid_input(client: Client) -> None:
    for since in (FAR_FUTURE, FAR_PAST):
        with pytest.raises(InvalidInput, match="since is out of range"):
            client.events(since=datetime.fromisoformat(since))


def test_an_api_token_lifetime_beyond_100_years_is_invalid_input(client: Client) -> None:
    with pytest.raises(InvalidInput, match="at most 100 years"):
        client.create_api_token("forever", "viewer", expires_in=timedelta(days=10**6))
    with pytest.raises(InvalidInput, match="at most 100 years"):
        client.create_api_token("overflow", "viewer", expires_in=timedelta(days=999_999_999))
    assert client.api_tokens() == []


@pytest.mark.slow
def test_the_cli_refuses_a_far_at_with_exit_2(client: Client) -> None:
    done = run_cli(client.settings, "job", "submit", "--at", "9999-12-31T23:59-23:00", "--", "true")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "hodei: error: invalid job: run_at must be at most 100 years from now,"
        " got '9999-12-31T23:59:00-23:00'"
    ]


def test_the_api_answers_far_times_with_422_invalid_input(api_server: ApiServer) -> None:
    headers = {"Authorization": f"Bearer {api_server.tokens['submitter']}"}
    cursors = [
        base64.urlsafe_b64encode(f"{t}|00000000-0000-4000-8000-000000000000".encode()).decode()
        for t in (FAR_FUTURE, FAR_PAST)
    ]
    with httpx.Client(base_url=api_server.url, headers=headers) as http:
        answers = [
            http.post("/v1/jobs", json={"command": "true", "run_at": FAR_FUTURE}),
            http.post("/v1/jobs", json={"command": "true", "run_at": FAR_PAST}),
            http.get("/v1/events", params={"since": FAR_FUTURE}),
            http.get("/v1/events", params={"since": FAR_PAST}),
            *(http.get("/v1/jobs", params={"cursor": c.rstrip("=")}) for c in cursors),
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["exit_code"] == 2
        assert answer.json()["code"] in ("InvalidInput", "InvalidJobSpec")
    client = api_server.client("submitter")
    try:
        with pytest.raises(InvalidJobSpec, match="at most 100 years"):
            client.submit("true", run_at=FAR_FUTURE)
        assert client.list() == []  # the next call on the same connection works
    finally:
        client.close()
