import pytest

from hodei import JobState
from hodei.sdk import Client

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_job_runs_on_postgres_and_redis(pg_client: Client) -> None:
    job = pg_client.submit("echo hi", name="smoke")
    done = pg_client.wait(job.id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert [line.line for line in pg_client.logs(job.id)] == ["hi"]
