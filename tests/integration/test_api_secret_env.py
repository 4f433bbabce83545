"""secret_env over ``hodei server`` (issue 18): the SDK and CLI over HTTP submit it, the
server seals it with its own key through the same submit as a local client, the job's
process gets the value and its output shows [masked], and the value is in no response,
job view, event, problem document (a 422 included) or line of the server's output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from hodei import JobSpec, JobState
from hodei.errors import InvalidConfiguration
from hodei.settings import Settings
from hodei.store.tables import domain_events, job_logs, jobs
from tests.api_server import ApiServer, running_server
from tests.support import hodei_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NOWHERE = {"secret": "nowhere"}  # no provider has this label: the job stays PENDING
SHOW_AND_HASH = 'echo "token=$API_TOKEN"; printf %s "$API_TOKEN" | sha256sum'


@pytest.fixture
def keyed(pg_settings: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, str, Path]]:
    """A server with a key of its own (HODEI_SECRET_KEY), logging at DEBUG into a file."""
    key = Fernet.generate_key().decode()
    settings = dataclasses.replace(pg_settings, secret_key=key, log_level="DEBUG")
    log = tmp_path / "server.log"
    with log.open("wb") as out, running_server(settings, log=out) as api:
        yield api, key, log


def _sealed(api: ApiServer, job_id: uuid.UUID) -> str | None:
    with api.direct.container.engine.connect() as conn:
        found = conn.execute(sa.select(jobs.c.secret_env).where(jobs.c.id == job_id))
        return found.scalar_one()


def _job_count(api: ApiServer) -> int:
    with api.direct.container.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())


def _bad_submits(secret: str) -> list[tuple[str, Any]]:
    """Submits that carry the secret and are refused (422) for something else."""
    ok = {"command": "true", "labels": NOWHERE, "secret_env": {"API_TOKEN": secret}}
    return [
        ("/v1/jobs", {**ok, "command": 5}),  # pydantic: not a string
        ("/v1/jobs", {**ok, "bogus": 1}),  # pydantic: an unknown field
        ("/v1/jobs", {**ok, "secret_env": {"API_TOKEN": secret, "N": 5}}),  # pydantic
        ("/v1/jobs", {**ok, "secret_env": [f"API_TOKEN={secret}"]}),  # not a mapping
        ("/v1/jobs", {**ok, "env": {"API_TOKEN": "x"}}),  # hodei: a name in both
        ("/v1/jobs", {**ok, "secret_env": {"API_TOKEN": secret + "\x00"}}),  # hodei: NUL
        ("/v1/jobs", {**ok, "secret_env": {"bad name": secret}}),  # hodei: the name
        ("/v1/jobs", {**ok, "timeout_s": -1}),  # hodei: another field
        ("/v1/jobs/batch", {"jobs": [ok, {**ok, "command": ""}]}),  # one bad job of two
        ("/v1/jobs", json.dumps(ok)[:-2]),  # not JSON (cut short)
    ]


def test_a_secret_submitted_over_http_reaches_the_job_only_and_is_masked(
    keyed: tuple[ApiServer, str, Path], tmp_path: Path
) -> None:
    api, key, log = keyed
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    client = api.client("submitter")
    one = client.submit(SHOW_AND_HASH, env={"PLAIN": "visible"}, secret_env={"API_TOKEN": secret})
    batch = client.submit_many(
        JobSpec.create(SHOW_AND_HASH, name=f"batch-{i}", secret_env={"API_TOKEN": secret})
        for i in range(2)
    )
    digest = hashlib.sha256(secret.encode()).hexdigest()
    for job in [one, *batch]:
        done = client.wait(job.id, timeout=90)
        lines = [line.line for line in client.logs(job.id)]
        assert done.state is JobState.SUCCEEDED, lines
        assert lines[0] == "token=[masked]" and lines[1].split()[0] == digest, lines
        # Sealed by the server with its key, as a local submit would.
        sealed = _sealed(api, job.id)
        assert sealed and secret not in sealed
        assert json.loads(Fernet(key.encode()).decrypt(sealed.encode())) == {"API_TOKEN": secret}

    # Nothing the API answers holds the value: the submit's own response, the job,
    # the list, the timeline, the events, the logs.
    http = httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {api.tokens['operator']}"}
    )
    body = {"command": "true", "labels": NOWHERE, "secret_env": {"API_TOKEN": secret}}
    created = http.post("/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    raw_id = created.json()["id"]
    answers = [
        created,
        http.post("/v1/jobs/batch", json={"jobs": [body, body]}),
        http.get(f"/v1/jobs/{raw_id}"),
        http.get(f"/v1/jobs/{one.id}"),
        http.get("/v1/jobs", params={"limit": 1000}),
        http.get(f"/v1/jobs/{one.id}/timeline"),
        http.get("/v1/events", params={"limit": 10_000}),
        http.get(f"/v1/jobs/{one.id}/logs"),
        http.get(f"/v1/jobs/{one.id}/diagnosis"),
    ]
    for answer in answers:
        assert answer.status_code < 300, answer.text
        assert secret not in answer.text, answer.request.url
    assert "secret_env" not in created.json()["spec"]
    assert "API_TOKEN" in answers[6].text  # JobCreated names it (secret_env_keys)

    # A bad submit carrying the secret: a one-line 422 problem that does not echo it,
    # and nothing stored.
    stored = _job_count(api)
    for path, bad in _bad_submits(secret):
        if isinstance(bad, str):
            response = http.post(path, content=bad, headers={"Content-Type": "application/json"})
        else:
            response = http.post(path, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] in ("InvalidInput", "InvalidJobSpec") and problem["exit_code"] == 2
        assert "\n" not in problem["detail"]
        assert secret not in response.text, response.text
    assert _job_count(api) == stored

    # Nor does anything stored in clear, the server's output (at DEBUG), or the
    # workers' logs.
    with api.direct.container.engine.connect() as conn:
        rows = [conn.execute(sa.select(t)).all() for t in (jobs, job_logs, domain_events)]
    assert secret not in repr(rows)
    client.close()
    http.close()
    assert log.stat().st_size > 0
    outputs = [log, *(api.direct.settings.home / "logs").glob("*")]
    assert len(outputs) > 1  # the workers the server launched logged too
    for path in outputs:
        assert secret.encode() not in path.read_bytes(), path


def test_the_cli_over_http_runs_a_job_with_secret_env(
    keyed: tuple[ApiServer, str, Path], tmp_path: Path
) -> None:
    api, _, log = keyed
    secret = f"from-env-{uuid.uuid4().hex}"
    given = f"given-{uuid.uuid4().hex}"
    env = api.env("submitter", DEPLOY_KEY=secret)
    assert "HODEI_DATABASE_URL" not in env
    run = subprocess.run(
        [sys.executable, "-m", "hodei", "job", "run", "--secret-env", "DEPLOY_KEY",
         "--secret-env", f"OTHER={given}", "--",
         "sh", "-c", 'echo "key: $DEPLOY_KEY"; echo "other: $OTHER"'],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "key: [masked]" in run.stdout and "other: [masked]" in run.stdout, run.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "hodei", "job", "list", "-o", "json"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for text in (run.stdout + run.stderr, shown.stdout + shown.stderr, log.read_text()):
        assert secret not in text and given not in text


def test_a_server_with_no_key_refuses_a_secret_as_a_local_client_does(
    pg_settings: Settings, tmp_path: Path
) -> None:
    """No HODEI_SECRET_KEY and no key file can be made (HODEI_HOME under a file): the
    submit is refused with one line, InvalidConfiguration, exit 2, over HTTP as locally;
    a job without secret_env is still taken."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = dataclasses.replace(pg_settings, home=blocker / "hodei", secret_key="")
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    with running_server(settings) as api:
        client = api.client("submitter")
        before = _job_count(api)
        with pytest.raises(InvalidConfiguration) as refused:
            client.submit("true", labels=NOWHERE, secret_env={"API_TOKEN": secret})
        message = refused.value.message
        assert message.startswith("secret_env cannot be encrypted: HODEI_SECRET_KEY is not set")
        assert secret not in message and "\n" not in message
        assert _job_count(api) == before
        assert client.submit("true", labels=NOWHERE).state is JobState.PENDING

        over_http = subprocess.run(
            [sys.executable, "-m", "hodei", "job", "submit", "--label", "secret=nowhere",
             "--secret-env", f"API_TOKEN={secret}", "--", "true"],
            env=api.env("submitter"), capture_output=True, text=True, timeout=60,
            cwd=tmp_path,
        )  # fmt: skip
        local = subprocess.run(
            [sys.executable, "-m", "hodei", "job", "submit", "--label", "secret=nowhere",
             "--secret-env", f"API_TOKEN={secret}", "--", "true"],
            env=hodei_env(settings), capture_output=True, text=True, timeout=60,
            cwd=tmp_path,
        )  # fmt: skip
        client.close()
    assert over_http.returncode == local.returncode == InvalidConfiguration.exit_code == 2
    assert over_http.stderr == local.stderr == f"hodei: error: {message}\n"
    assert secret not in over_http.stdout + local.stdout


def test_the_openapi_schema_documents_secret_env_as_write_only(api_server: ApiServer) -> None:
    schema = httpx.get(f"{api_server.url}/openapi.json").json()["components"]["schemas"]
    field = schema["SubmitRequest"]["properties"]["secret_env"]
    assert field["writeOnly"] is True
    assert "secret_env" not in schema["JobSpec"]["properties"]  # no answer has it
