"""The SQL in docs/troubleshooting.md (operators' queries on hodei's schema and
views) runs on PostgreSQL and finds the job it is asked about."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from hodei import JobState
from hodei.sdk import Client
from tests.integration.operators_plant import HAPPY, plant_job
from tests.support import REPO

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def doc_statements() -> list[str]:
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    statements = [s.strip().rstrip(";") for block in blocks for s in block.split(";\n")]
    return [s for s in statements if any(_is_code(line) for line in s.splitlines())]


def _is_code(line: str) -> bool:
    return bool(line.strip()) and not line.strip().startswith("--")


def test_the_documented_sql_runs_and_finds_the_job(pg_client: Client) -> None:
    job = plant_job(pg_client, state=JobState.QUEUED, steps=HAPPY[:2], correlation_id="wf-doc")
    statements = doc_statements()
    assert len(statements) >= 15
    found_job = 0
    with pg_client.container.engine.connect() as conn:
        for statement in statements:
            sql = statement.replace("<JOB_ID>", str(job.id)).replace("<CORRELATION_ID>", "wf-doc")
            rows = conn.exec_driver_sql(sql).all()
            if "<JOB_ID>" in statement:
                assert rows, f"no row for the job from:\n{statement}"
                found_job += 1
        queued = conn.execute(sa.text("SELECT job_id FROM job_queue")).scalars().all()
    assert found_job >= 6
    assert queued == [job.id]
