"""Streams over ``hodei server``: the event stream resumes exactly once across
reconnects (on either of two replicas), and the CLI runs the README flow with only
an API token: job run, logs --follow, events follow, wait; a viewer cannot submit."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hodei import JobSpec, JobState
from hodei.settings import Settings
from tests.api_server import ApiServer, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

JOBS = 150  # the 500, scaled to keep this test near 20 s on two shared cores
RECONNECTS = 20


def _read(http: httpx.Client, token: str, last_id: int | None, count: int) -> list[int]:
    """Open the stream, read ``count`` events (or until the stream idles), hang up."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    params = {} if last_id is not None else {"from_id": 1}
    seen: list[int] = []
    with http.stream("GET", "/v1/events/stream", headers=headers, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = int(line[3:])
            elif line.startswith("data:"):
                assert json.loads(line[5:])["id"] == event_id
                seen.append(event_id)
                if len(seen) == count:
                    break
    return seen


@pytest.mark.slow
def test_the_event_stream_is_exactly_once_across_reconnects_and_replicas(
    api_server: ApiServer, pg_settings: Settings
) -> None:
    with running_server(pg_settings, tokens=api_server.tokens) as replica:
        submitter = api_server.client("submitter")
        specs = [JobSpec.create(f"echo {i}", correlation_id="sse") for i in range(JOBS)]
        jobs = submitter.submit_many(specs)
        token = api_server.tokens["viewer"]
        replicas = [httpx.Client(base_url=s.url, timeout=30) for s in (api_server, replica)]
        rng = random.Random(18)
        seen: list[int] = []
        for round_no in range(RECONNECTS):
            http = replicas[round_no % 2]
            seen += _read(http, token, seen[-1] if seen else None, rng.randint(5, 60))
        for job in jobs:
            assert submitter.wait(job.id, timeout=120).state is JobState.SUCCEEDED
        last = api_server.direct.events(limit=1)[-1].id
        assert last is not None
        while seen[-1] < last:
            seen += _read(replicas[0], token, seen[-1], last - seen[-1])
        everything = [e.id for e in api_server.direct.events(after_id=0, limit=10_000)]
        assert seen == everything  # every event, once, in order
        assert len(seen) > JOBS * 4
        for http in replicas:
            http.close()
        submitter.close()


def _cli(
    server: ApiServer, role: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=server.env(role),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parent,
    )


def test_the_cli_runs_the_readme_flow_with_a_submitter_token(api_server: ApiServer) -> None:
    run = _cli(api_server, "submitter", "job", "run", "--", "echo hello; echo oops >&2; exit 3")
    assert (run.returncode, run.stdout) == (3, "hello\n")
    assert "oops" in run.stderr
    submitted = _cli(api_server, "submitter", "job", "submit", "--", "sleep 1; echo later")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    follow = _cli(api_server, "submitter", "job", "logs", "--follow", job_id)
    assert (follow.returncode, follow.stdout) == (0, "later\n")
    # events follow never ends by itself: read three events, then stop it.
    with subprocess.Popen(
        [sys.executable, "-m", "hodei", "events", "follow", "--from-id", "1", "-o", "json"],
        env=api_server.env("viewer"),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline()) for _ in range(3)]
        proc.terminate()
    assert [e["id"] for e in first] == sorted(e["id"] for e in first)
    shown = _cli(api_server, "viewer", "job", "show", job_id, "-o", "json")
    assert json.loads(shown.stdout)["submitted_by"] == "api:test-submitter"
    status = _cli(api_server, "viewer", "status", "-o", "json")
    assert json.loads(status.stdout)["api"] == api_server.url  # not a local database
    timeline = _cli(api_server, "viewer", "job", "timeline", job_id)
    assert "api:test-submitter" in timeline.stdout or "test-submitter" in timeline.stdout


def test_a_viewer_cannot_submit_and_a_bad_token_is_refused(api_server: ApiServer) -> None:
    refused = _cli(api_server, "viewer", "job", "submit", "--", "echo no")
    assert refused.returncode == 10  # Forbidden
    assert refused.stderr.count("\n") == 1 and "role viewer" in refused.stderr
    assert _cli(api_server, "viewer", "job", "list").returncode == 0
    env = api_server.env("viewer")
    env["HODEI_API_TOKEN"] = "hodei_pat_not-a-real-one"
    bad = subprocess.run(
        [sys.executable, "-m", "hodei", "status"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 9  # Unauthorized
    assert "hodei_pat_not-a-real-one" not in bad.stderr
    assert api_server.direct.list() == []


def test_the_sdk_waits_and_follows_events_over_http(api_server: ApiServer) -> None:
    client = api_server.client("submitter")
    stream = client.follow_events(types=["JobSucceeded"], from_id=1)
    job = client.submit("echo via sdk")
    assert client.wait(job.id, timeout=60).state is JobState.SUCCEEDED
    event = next(stream)
    assert (event.event_type, event.aggregate_id) == ("JobSucceeded", job.id)
    stream.close()
    assert [ln.line for ln in client.follow_logs(job.id)] == ["via sdk"]
    client.close()


def test_the_sdk_event_stream_reconnects_exactly_once_when_the_connection_is_cut(
    api_server: ApiServer,
) -> None:
    from urllib.parse import urlparse

    from hodei.sdk_http import HttpClient
    from hodei.services.operators.events_feed import FollowOptions
    from tests.support import TcpProxy

    submitter = api_server.client("submitter")
    proxy = TcpProxy(int(urlparse(api_server.url).port or 0))
    proxy.start()
    client = HttpClient(f"http://127.0.0.1:{proxy.port}", api_server.tokens["viewer"])
    stream = client.follow_events(from_id=1, options=FollowOptions(retry_s=0.05, max_retry_s=0.2))
    seen: list[int] = []
    try:
        for round_no in range(6):
            job = submitter.submit(f"echo round {round_no}")
            for event in stream:  # read this job's events live, up to its end
                assert event.id is not None
                seen.append(event.id)
                if event.event_type == "JobSucceeded" and event.aggregate_id == job.id:
                    break
            proxy.stop()  # cut the stream's connection; the client reconnects
            proxy.start()
    finally:
        stream.close()
        client.close()
        proxy.stop()
        submitter.close()
    everything = [e.id for e in api_server.direct.events(after_id=0, limit=10_000)]
    assert seen == everything[: len(seen)]  # each once, in order, none skipped


def test_a_followed_log_stream_resumes_after_a_cut_without_losing_a_line(
    api_server: ApiServer,
) -> None:
    from urllib.parse import urlparse

    from hodei.sdk_http import HttpClient
    from tests.support import TcpProxy

    proxy = TcpProxy(int(urlparse(api_server.url).port or 0))
    proxy.start()
    client = HttpClient(f"http://127.0.0.1:{proxy.port}", api_server.tokens["submitter"])
    try:
        job = client.submit("for i in $(seq 1 40); do echo line-$i; sleep 0.05; done")
        seen = []
        for line in client.follow_logs(job.id):
            seen.append(line.line)
            if len(seen) in (5, 20):  # cut the stream mid-output; the client resumes
                proxy.stop()
                proxy.start()
    finally:
        client.close()
        proxy.stop()
    assert seen == [f"line-{i}" for i in range(1, 41)]
