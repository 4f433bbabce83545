"""The few words a run-job task returns: what Celery logs and Flower shows as its result."""

from __future__ import annotations

import pytest

from hodei.services.jobs.attempts import Outcome


@pytest.mark.parametrize(
    ("outcome", "summary"),
    [
        (Outcome(exit_code=0), "exit 0"),
        (Outcome(exit_code=3), "exit 3"),
        (Outcome(exit_code=None, signal=9), "signal 9"),
        (Outcome(exit_code=None, signal=15, timed_out=True), "timed out"),
        (Outcome(exit_code=None, signal=15, cancelled=True), "cancelled"),
        (Outcome(exit_code=127, error="command not found: nope"), "error: command not found: nope"),
    ],
)
def test_summary(outcome: Outcome, summary: str) -> None:
    assert outcome.summary() == summary
