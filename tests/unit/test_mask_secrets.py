"""Secrets never reach a log line, whichever form they take."""

from __future__ import annotations

import pytest

from hodei.logconfig import mask_secrets

TOKEN = "hodei_" + "A1b2C3d4E5f6G7h8I9j0K1l2"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("broker at redis://:s3cret@127.0.0.1:6379/0", "s3cret"),
        ("db postgresql+psycopg://hodei:pw0rd@db/hodei", "pw0rd"),
        ("PASSWORD=hunter2 set", "hunter2"),
        ("passwd: hunter2", "hunter2"),
        ("Secret = opensesame", "opensesame"),
        ("token=abc123", "abc123"),
        ("HODEI_OTP_TOKEN=xyz789", "xyz789"),
        ("FLOWER_BASIC_AUTH=admin:pa55", "admin:pa55"),
        ("MY_API_KEY: k-123", "k-123"),
        (f"worker started with {TOKEN}", TOKEN.removeprefix("hodei_")),
    ],
)
def test_each_form_of_secret_is_masked(text: str, secret: str) -> None:
    masked = mask_secrets(text)
    assert secret not in masked
    assert "***" in masked


def test_text_without_secrets_is_returned_as_is() -> None:
    line = "job 5f0c attempt 1 ended SUCCEEDED [job_id=5f0c worker_id=9a1e attempt=1]"
    assert mask_secrets(line) is line
