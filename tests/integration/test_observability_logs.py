"""JSON logs: a worker started with HODEI_LOG_FORMAT=json writes one JSON record per
line, Celery's own lines included, and a job's records can be selected by job_id."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from hodei import JobState
from hodei.logconfig import configure_logging
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers


@pytest.fixture
def json_client(pg_settings: Settings) -> Iterator[Client]:
    overrides = {f.name: getattr(pg_settings, f.name) for f in dataclasses.fields(pg_settings)}
    client = Client.from_env(**{**overrides, "log_format": "json"})
    yield client
    stop_workers(client)
    client.close()


# Celery's signal handler prints this straight to stdout, outside logging.
CELERY_SHUTDOWN_NOTICE = re.compile(r"^(worker: (Warm|Cold) shutdown \(MainProcess\))?$")


def _records(client: Client) -> list[dict[str, Any]]:
    """Every record of every worker log in HODEI_HOME/logs, each line parsed as JSON."""
    records = []
    for path in sorted((client.settings.home / "logs").glob("*.log")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if CELERY_SHUTDOWN_NOTICE.match(line):
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{path.name}:{number} is not a JSON record: {line!r}")
    return records


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_jobs_records_are_selected_by_job_id(json_client: Client) -> None:
    client = json_client
    job = client.submit("echo hello", name="json-logs", correlation_id="order-42")
    other = client.submit("true", name="another")
    assert client.wait(job.id, timeout=90).state is JobState.SUCCEEDED
    assert client.wait(other.id, timeout=90).state is JobState.SUCCEEDED
    stop_workers(client)  # the workers flush and close their logs

    records = _records(client)
    mine = [r for r in records if r.get("job_id") == str(job.id)]
    messages = [r["message"] for r in mine]
    assert any("attempt 1 started" in m for m in messages), messages
    assert any("ended SUCCEEDED" in m for m in messages), messages
    # Celery's own lines about the task carry the job too (setup_logging + task context).
    assert any(m.startswith("Task hodei.run_job[") and "received" in m for m in messages)
    # ...and say how the command ended, in a few words.
    assert any(
        m.startswith("Task hodei.run_job[") and "succeeded" in m and m.endswith(": 'exit 0'")
        for m in messages
    ), messages
    started = next(r for r in mine if "attempt 1 started" in r["message"])
    assert started["attempt"] == 1
    assert started["correlation_id"] == "order-42"
    assert started["worker_id"]
    assert {"ts", "level", "logger", "message"} <= started.keys()
    assert all(r.get("job_id") != str(other.id) for r in mine)


def test_secrets_in_urls_and_env_values_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        logging.getLogger("hodei.test").warning(
            "connecting to %s with HODEI_FLOWER_BASIC_AUTH=%s and POSTGRES_PASSWORD=%s",
            "postgresql://hodei:pg-s3cret@db:5432/hodei",
            "admin:flower-s3cret",
            "pw-s3cret",
            extra={"job_id": "j-1"},
        )
        record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        logging.getLogger().handlers.clear()
        logging.captureWarnings(False)
    assert "s3cret" not in json.dumps(record)
    assert "postgresql://hodei:***@db:5432/hodei" in record["message"]
    assert record["job_id"] == "j-1"
