"""The authorization matrix of ``hodei server``: every endpoint, every role and every
kind of bad token (none, unknown, revoked, expired). A refused call gets 401 or 403,
changes nothing, is counted in /metrics, and no token secret reaches a log line or an
event. One server for the whole matrix, and no job ever runs (their labels match no
provider), so it takes a few seconds."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hodei import JobSpec
from tests.api_server import ROLES, ApiServer, module_pg_settings, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NOWHERE = {"matrix": "nowhere"}  # no provider has this label: jobs stay PENDING
# Every submit of the matrix carries it: refused or not, no log line or event holds it.
MATRIX_SECRET = "matrix-secret-0f3c9a7e5d"
SUBMIT = {"command": "true", "labels": NOWHERE, "secret_env": {"MATRIX_TOKEN": MATRIX_SECRET}}

# (method, path, body, the least role allowed). {job} is a job of the submitter,
# {other} one of the operator, {worker} a provisioning worker; {role} makes names unique.
ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/jobs", None, "viewer"),
    ("GET", "/v1/jobs/{job}", None, "viewer"),
    ("GET", "/v1/jobs/{job}/wait?timeout=0", None, "viewer"),
    ("GET", "/v1/jobs/{job}/logs", None, "viewer"),
    ("GET", "/v1/jobs/{done}/logs/follow", None, "viewer"),
    ("GET", "/v1/jobs/{job}/timeline", None, "viewer"),
    ("GET", "/v1/timeline?correlation_id=matrix", None, "viewer"),
    ("GET", "/v1/jobs/{job}/diagnosis", None, "viewer"),
    ("GET", "/v1/events", None, "viewer"),
    ("GET", "/v1/events/stream", None, "viewer"),
    ("GET", "/v1/status", None, "viewer"),
    ("GET", "/v1/doctor", None, "viewer"),
    ("GET", "/v1/providers", None, "viewer"),
    ("GET", "/v1/providers/local", None, "viewer"),
    ("GET", "/v1/workers", None, "viewer"),
    ("GET", "/v1/workers/{worker}", None, "viewer"),
    ("GET", "/v1/whoami", None, "viewer"),
    ("POST", "/v1/jobs", SUBMIT, "submitter"),
    ("POST", "/v1/jobs/batch", {"jobs": [SUBMIT, SUBMIT]}, "submitter"),
    ("POST", "/v1/jobs/{job}/cancel", None, "submitter"),
    ("POST", "/v1/jobs/{done}/retry", None, "submitter"),
    ("POST", "/v1/providers", {"name": "p-{role}", "provider_type": "local"}, "operator"),
    ("PATCH", "/v1/providers/local", {"priority": 1}, "operator"),
    ("POST", "/v1/providers/spare/disable", None, "operator"),
    ("POST", "/v1/providers/spare/enable", None, "operator"),
    ("POST", "/v1/providers/spare/drain", None, "operator"),
    ("POST", "/v1/providers-health?name=spare", None, "operator"),
    ("DELETE", "/v1/providers/gone-{role}", None, "operator"),
    ("POST", "/v1/workers/{worker}/drain", None, "operator"),
    ("POST", "/v1/worker-tokens", {"provider": "spare", "ttl_s": 60}, "operator"),
    ("GET", "/v1/schedules", None, "viewer"),
    ("GET", "/v1/schedules/sched", None, "viewer"),
    (
        "POST",
        "/v1/schedules",
        {"name": "s-{role}", "cron": "0 0 * * *", "job": {"command": "true", "labels": NOWHERE}},
        "submitter",
    ),
    ("POST", "/v1/schedules/sched/trigger", None, "submitter"),
    ("POST", "/v1/schedules/sched/pause", None, "submitter"),
    ("POST", "/v1/schedules/sched/resume", None, "submitter"),
    ("DELETE", "/v1/schedules/gone-{role}", None, "submitter"),
    ("GET", "/v1/tokens", None, "admin"),
    ("POST", "/v1/tokens", {"name": "t-{role}", "role": "viewer"}, "admin"),
    ("DELETE", "/v1/tokens/doomed-{role}", None, "admin"),
]
PUBLIC = ["/health/live", "/health/ready", "/metrics", "/openapi.json"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: str, redis_db_number: int
) -> Iterator[tuple[ApiServer, Path, dict[str, str]]]:
    home = tmp_path_factory.mktemp("matrix")
    settings_cm = module_pg_settings(home, postgres_template, redis_db_number)
    log_path = home / "server.log"
    with (
        settings_cm as settings,
        log_path.open("wb") as log,
        running_server(settings, log=log) as api,
    ):
        direct = api.direct
        bad = {
            "no token": "",
            "unknown token": "hodei_pat_" + "x" * 43,
            "not a hodei token": "Zm9vOmJhcg==",
        }
        _, bad["revoked token"] = direct.create_api_token("revoked", "admin")
        direct.revoke_api_token("revoked")
        _, bad["expired token"] = direct.create_api_token(
            "expired", "admin", expires_in=timedelta(milliseconds=1)
        )
        direct.add_provider("spare", "local", max_workers=0)
        yield api, log_path, bad


def _objects(api: ApiServer) -> dict[str, str]:
    submitter = api.client("submitter")
    operator = api.client("operator")
    spec = JobSpec.create("true", labels=NOWHERE, correlation_id="matrix")
    job = submitter.submit_many([spec])[0]
    done = submitter.cancel(submitter.submit_many([spec])[0].id)
    other = operator.submit_many([spec])[0]
    worker = api.direct.create_worker_token("spare").worker
    submitter.add_schedule("sched", "0 0 * * *", "true", labels=NOWHERE)
    operator.add_schedule("theirs", "0 0 * * *", "true", labels=NOWHERE)
    for role in ROLES:
        api.direct.create_api_token(f"doomed-{role}", "viewer")
        api.direct.add_provider(f"gone-{role}", "local", max_workers=0)
        submitter.add_schedule(f"gone-{role}", "0 0 * * *", "true", labels=NOWHERE)
    submitter.close()
    operator.close()
    return {
        "job": str(job.id),
        "done": str(done.id),
        "other": str(other.id),
        "worker": str(worker.id),
    }


def _snapshot(api: ApiServer) -> tuple[int, ...]:
    """Everything a call could change: the event log and every table's row count."""
    with api.direct.container.engine.connect() as conn:
        return tuple(
            int(conn.execute(sa.text(sql)).scalar_one())
            for sql in (
                "SELECT coalesce(max(id), 0) FROM domain_events",
                "SELECT count(*) FROM jobs",
                "SELECT count(*) FROM jobs WHERE state = 'CANCELLED'",
                "SELECT count(*) FROM provider_configs",
                "SELECT count(*) FROM provider_configs WHERE status <> 'ACTIVE'",
                "SELECT coalesce(sum(priority), 0) FROM provider_configs",
                "SELECT count(*) FROM workers WHERE state = 'DRAINING'",
                "SELECT count(*) FROM worker_bootstrap_tokens",
                "SELECT count(*) FROM api_tokens",
                "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL",
                "SELECT count(*) FROM schedules",
                "SELECT count(*) FROM schedules WHERE paused",
                "SELECT count(*) FROM schedule_fires",
            )
        )


def _call(http: httpx.Client, method: str, path: str, body: Any, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path.endswith("/stream") or path.endswith("/follow"):
        with http.stream(method, path, headers=headers, timeout=10) as response:
            return response.status_code
    return http.request(method, path, json=body, headers=headers, timeout=30).status_code


def _refused_total(http: httpx.Client, reason: str) -> float:
    text = http.get("/metrics").text
    found = re.search(rf'hodei_api_refused_total{{reason="{reason}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_every_endpoint_for_every_role_and_every_bad_token(
    server: tuple[ApiServer, Path, dict[str, str]],
) -> None:
    api, log_path, bad = server
    ids = _objects(api)
    time.sleep(0.01)  # the expired token's millisecond is over
    http = httpx.Client(base_url=api.url)
    forbidden_before = _refused_total(http, "forbidden")
    unauthorized_before = _refused_total(http, "unauthorized")
    checked = refused = 0
    for method, template, body_template, least in ENDPOINTS:
        for who in [*ROLES, *bad]:
            values = {**ids, "role": who.replace(" ", "-")}
            path = template.format(**values)
            body = _format(body_template, values)
            token = api.tokens[who] if who in ROLES else bad[who]
            before = _snapshot(api)
            status = _call(http, method, path, body, token)
            checked += 1
            where = f"{method} {path} as {who}"
            if who not in ROLES:
                assert status == 401, where
            elif ROLES.index(who) < ROLES.index(least):
                assert status == 403, where
            else:
                assert status < 400 or status in (404, 409), f"{where}: {status}"
                continue
            refused += 1
            assert _snapshot(api) == before, f"{where} changed something"
    # A submitter may cancel and retry only its own jobs; an operator any.
    submitter = api.tokens["submitter"]
    before = _snapshot(api)
    assert _call(http, "POST", f"/v1/jobs/{ids['other']}/cancel", None, submitter) == 403
    assert _snapshot(api) == before
    assert (
        _call(http, "POST", f"/v1/jobs/{ids['other']}/cancel", None, api.tokens["operator"]) == 200
    )
    refused += 1
    # The same for schedules: a submitter changes only those it made.
    before = _snapshot(api)
    for action in ("pause", "trigger"):
        assert _call(http, "POST", f"/v1/schedules/theirs/{action}", None, submitter) == 403
    assert _call(http, "DELETE", "/v1/schedules/theirs", None, submitter) == 403
    assert _snapshot(api) == before
    assert _call(http, "POST", "/v1/schedules/theirs/pause", None, api.tokens["operator"]) == 200
    refused += 3
    for path in PUBLIC:
        assert http.get(path).status_code in (200, 503), path
    forbidden = (
        sum(1 for _, _, _, least in ENDPOINTS for r in ROLES if ROLES.index(r) < ROLES.index(least))
        + 4
    )
    assert _refused_total(http, "forbidden") - forbidden_before == forbidden
    assert _refused_total(http, "unauthorized") - unauthorized_before == len(ENDPOINTS) * len(bad)
    assert checked == len(ENDPOINTS) * (len(ROLES) + len(bad))
    print(
        f"authorization matrix: {len(ENDPOINTS)} endpoints x {len(ROLES) + len(bad)} callers"
        f" = {checked} calls, {refused} refused"
    )
    # No secret in the server's log or in any event.
    secrets = [*api.tokens.values(), *(t for t in bad.values() if t.startswith("hodei_pat_"))]
    secrets.append(MATRIX_SECRET)
    log = log_path.read_text(errors="replace")
    assert "refused" in log
    with api.direct.container.engine.connect() as conn:
        events = " ".join(
            str(row) for row in conn.execute(sa.text("SELECT actor, payload FROM domain_events"))
        )
    for secret in secrets:
        assert secret not in log and secret not in events
    assert "hodei_pat_" not in events
    http.close()


def test_every_event_a_caller_causes_names_its_token(
    server: tuple[ApiServer, Path, dict[str, str]],
) -> None:
    api, _, _ = server
    operator = api.client("operator")
    job = operator.submit("true", labels=NOWHERE)
    operator.cancel(job.id)
    events = api.direct.timeline(job.id, related=False)
    caused = {e.event_type: e.actor for e in events if not e.actor.startswith("system:")}
    assert set(caused) >= {"JobCreated", "JobCancelled"}
    assert set(caused.values()) == {"api:test-operator"}
    assert api.direct.get(job.id).submitted_by == "api:test-operator"
    operator.close()
    # No body can name another actor: every such field is refused, nothing stored.
    http = httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {api.tokens['operator']}"}
    )
    before = _snapshot(api)
    for method, path, body in (
        ("POST", "/v1/jobs", {"command": "true", "actor": "cli:root"}),
        ("POST", "/v1/jobs", {"command": "true", "submitted_by": "cli:root"}),
        ("PATCH", "/v1/providers/local", {"actor": "cli:root", "priority": 3}),
        (
            "POST",
            "/v1/providers",
            {"name": "x", "provider_type": "local", "fields": {"actor": "cli:root"}},
        ),
    ):
        response = http.request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
    assert _snapshot(api) == before
    http.close()


def test_env_values_are_shown_only_to_their_submitter_and_operators(
    server: tuple[ApiServer, Path, dict[str, str]],
) -> None:
    api, _, _ = server
    submitter = api.client("submitter")
    job = submitter.submit(
        "true", labels=NOWHERE, env={"API_KEY": "s3cret"}, secret_env={"TOKEN": MATRIX_SECRET}
    )
    seen = {}
    for role in ROLES:
        client = api.client(role)
        seen[role] = client.get(job.id).spec.env["API_KEY"]
        assert {j.id: j.spec.env for j in client.list(limit=1000)}[job.id] == {
            "API_KEY": seen[role]
        }
        client.close()
        # secret_env is shown to no role, not even its submitter's.
        headers = {"Authorization": f"Bearer {api.tokens[role]}"}
        for path in (f"/v1/jobs/{job.id}", "/v1/jobs?limit=1000", f"/v1/jobs/{job.id}/timeline"):
            answer = httpx.get(api.url + path, headers=headers)
            assert answer.status_code == 200 and MATRIX_SECRET not in answer.text, (role, path)
    assert seen == {"viewer": "***", "submitter": "s3cret", "operator": "s3cret", "admin": "s3cret"}
    assert api.direct.get(job.id).spec.env == {"API_KEY": "s3cret"}  # stored as given
    submitter.close()


def test_a_revoked_token_is_refused_within_a_second(
    server: tuple[ApiServer, Path, dict[str, str]],
) -> None:
    api, _, _ = server
    _, secret = api.direct.create_api_token("soon-revoked", "viewer")
    http = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"})
    assert http.get("/v1/whoami").status_code == 200  # now trusted for AUTH_CACHE_S
    admin = api.client("admin")
    admin.revoke_api_token("soon-revoked")
    deadline = time.monotonic() + 1.5
    while http.get("/v1/whoami").status_code == 200:
        assert time.monotonic() < deadline, "a revoked token still works after 1.5 s"
        time.sleep(0.05)
    refused = http.get("/v1/whoami")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert secret not in refused.text
    listed = {t.name: t for t in admin.api_tokens(include_revoked=True)}
    assert listed["soon-revoked"].revoked_at is not None
    assert listed["soon-revoked"].last_used_at is not None
    revoked = [e for e in api.direct.events(types=["ApiTokenRevoked"], limit=10_000)]
    assert revoked[-1].actor == "api:test-admin" and revoked[-1].payload["name"] == "soon-revoked"
    admin.close()
    http.close()


def _format(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _format(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_format(v, values) for v in value]
    return value
