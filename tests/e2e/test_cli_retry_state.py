"""`hodei job retry` says the state the job is in after the retry, not "queued" for a
job that stays PENDING because no provider can take it (issue 16's trial)."""

from __future__ import annotations

from hodei.sdk import Client
from tests.support import run_cli


def test_retry_of_a_job_no_provider_can_take_says_pending(embedded_client: Client) -> None:
    settings = embedded_client.settings
    assert run_cli(settings, "provider", "update", "local", "--max-workers", "0").returncode == 0
    submitted = run_cli(settings, "job", "submit", "--", "true")
    assert submitted.returncode == 0, submitted.stderr
    job = embedded_client.list()[0]
    assert run_cli(settings, "job", "cancel", str(job.id)).returncode == 0

    result = run_cli(settings, "job", "retry", str(job.id))

    assert result.returncode == 0, result.stderr
    assert embedded_client.get(job.id).state.value == "PENDING"
    assert "queued" not in result.stdout
    assert f"job {job.id} is PENDING as attempt 2: no provider can take it now" in result.stdout
    assert "local: no capacity (max_workers=0)" in result.stderr  # why, once, as `job run`
