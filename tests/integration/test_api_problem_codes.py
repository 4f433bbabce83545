"""Every client error over HTTP names the hodei error class and exit code a user
expects, with a message saying what to fix: a body that is not JSON, a method an
endpoint does not take, a wrong content type, a string where the SDK wants a number."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api_server import ApiServer


def _problem(answer: httpx.Response) -> tuple[int, str, int, str]:
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.status_code, body["code"], body["exit_code"], body["detail"]


@pytest.fixture
def http(api_server: ApiServer) -> Any:
    headers = {
        "Authorization": f"Bearer {api_server.tokens['admin']}",
        "Content-Type": "application/json",
    }
    with httpx.Client(base_url=api_server.url, headers=headers) as client:
        yield client


NOT_JSON = "the body is not valid JSON in UTF-8"


@pytest.mark.parametrize(
    "body",
    [b'{"command":"echo \xff"}', b"[" * 100_000 + b"]" * 100_000, b"{bad"],
    ids=["not-utf8", "nested-100k", "malformed"],
)
def test_a_body_that_cannot_be_parsed_is_invalid_input(http: httpx.Client, body: bytes) -> None:
    status, code, exit_code, detail = _problem(http.post("/v1/jobs", content=body))
    assert (status, code, exit_code) == (422, "InvalidInput", 2)
    assert detail.startswith(NOT_JSON)


def test_a_method_an_endpoint_does_not_take_names_the_allowed_ones(http: httpx.Client) -> None:
    answer = http.patch("/v1/jobs", content=b"{}")
    status, code, exit_code, detail = _problem(answer)
    assert (status, code, exit_code) == (405, "MethodNotAllowed", 2)
    assert detail.startswith("PATCH is not allowed on /v1/jobs; use ")
    assert "POST" in detail and "GET" in detail
    assert answer.headers["allow"] in detail


@pytest.mark.parametrize("ctype", ["text/plain", ""])
def test_a_wrong_content_type_says_which_to_send(http: httpx.Client, ctype: str) -> None:
    answer = http.post("/v1/jobs", content=b'{"command": "true"}', headers={"Content-Type": ctype})
    status, code, exit_code, detail = _problem(answer)
    assert (status, code, exit_code) == (422, "InvalidInput", 2)
    assert detail.startswith("send Content-Type: application/json")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/jobs", {"command": "true", "priority": "9"}, "priority"),
        ("/v1/jobs", {"command": "true", "priority": True}, "priority"),
        ("/v1/jobs", {"command": "true", "timeout_s": "10"}, "timeout_s"),
        ("/v1/jobs", {"command": "true", "max_attempts": "2"}, "max_attempts"),
        ("/v1/jobs", {"command": "true", "after_any": "true"}, "after_any"),
        ("/v1/jobs/batch", {"jobs": [{"command": "true", "priority": "9"}]}, "priority"),
        (
            "/v1/schedules",
            {"name": "s", "cron": "* * * * *", "paused": "yes", "job": {"command": "true"}},
            "paused",
        ),
        ("/v1/worker-tokens", {"ttl_s": "100"}, "ttl_s"),
    ],
)
def test_a_string_for_a_number_or_flag_is_refused_as_the_sdk_refuses_it(
    http: httpx.Client, api_server: ApiServer, path: str, body: dict[str, Any], field: str
) -> None:
    status, code, exit_code, detail = _problem(http.post(path, json=body))
    assert (status, code, exit_code) == (422, "InvalidInput", 2)
    assert field in detail
    assert api_server.direct.list() == []


def test_numbers_of_the_right_type_are_still_taken(http: httpx.Client) -> None:
    answer = http.post("/v1/jobs", json={"command": "true", "priority": 9, "timeout_s": 10})
    assert answer.status_code == 201, answer.text
    assert answer.json()["spec"]["priority"] == 9
