"""Secret job variables (issue 19, item 4): a secret_env value reaches the job's process
only; it is stored encrypted, shown by no command, event or log of hodei's, and masked
where the job prints it."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import sqlalchemy as sa

from hodei import JobState
from hodei.sdk import Client
from hodei.store.tables import domain_events, job_logs, jobs
from tests.support import hodei_env, run_cli


def _everything_stored(client: Client) -> str:
    with client.container.engine.connect() as conn:
        rows = [conn.execute(sa.select(t)).all() for t in (jobs, job_logs, domain_events)]
    return repr(rows)


def test_a_secret_reaches_the_job_only_and_is_masked_in_its_output(
    embedded_client: Client,
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    job = embedded_client.submit(
        'echo "token=$API_TOKEN"; printf %s "$API_TOKEN" | sha256sum; echo "plain=$PLAIN"',
        env={"PLAIN": "visible"},
        secret_env={"API_TOKEN": secret},
    )
    done = embedded_client.wait(job.id, timeout=60)
    lines = [line.line for line in embedded_client.logs(job.id)]
    assert done.state is JobState.SUCCEEDED, lines
    # The job got the value (its hash), printed as [masked]; plain env stays visible.
    assert lines[:1] == ["token=[masked]"]
    assert lines[1].split()[0] == hashlib.sha256(secret.encode()).hexdigest()
    assert "plain=visible" in lines

    settings = embedded_client.container.settings
    stored = _everything_stored(embedded_client)
    assert secret not in stored
    assert "API_TOKEN" in stored  # the name is in JobCreated's secret_env_keys
    with embedded_client.container.engine.connect() as conn:
        sealed = conn.execute(sa.select(jobs.c.secret_env)).scalar_one()
    assert sealed and secret not in sealed
    key_file = settings.home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    shown = [
        run_cli(settings, "job", "show", str(job.id), "-o", "json"),
        run_cli(settings, "job", "list", "-o", "json"),
        run_cli(settings, "job", "timeline", str(job.id)),
        run_cli(settings, "events", "list", "-o", "json"),
    ]
    for result in shown:
        assert secret not in result.stdout + result.stderr
    assert all(r.returncode == 0 for r in shown), [r.stderr for r in shown]
    for log in (settings.home / "logs").glob("*"):
        assert secret not in log.read_text(errors="replace")
    assert secret not in repr(embedded_client.get(job.id))


def test_secret_env_from_the_callers_environment_on_the_command_line(
    embedded_client: Client, tmp_path: Path
) -> None:
    settings = embedded_client.container.settings
    secret = f"from-env-{uuid.uuid4().hex}"
    env = hodei_env(settings, DEPLOY_KEY=secret)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "hodei",
            "job",
            "run",
            "--secret-env",
            "DEPLOY_KEY",
            "--",
            "sh",
            "-c",
            'echo "key: $DEPLOY_KEY"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "key: [masked]" in run.stdout and secret not in run.stdout + run.stderr

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "hodei",
            "job",
            "submit",
            "--secret-env",
            "NOT_SET_ANYWHERE_X",
            "--",
            "true",
        ],
        env={k: v for k, v in env.items() if k != "NOT_SET_ANYWHERE_X"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "hodei: error: --secret-env NOT_SET_ANYWHERE_X: NOT_SET_ANYWHERE_X is not set in the"
        " environment"
    )
    assert os.environ.get("NOT_SET_ANYWHERE_X") is None
