"""Reopening a job as its next attempt: the one way a job goes back to PENDING."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from hodei.domain.records import Job
from hodei.domain.states import JobState
from hodei.services.ports import Transaction


def reopen_as_next_attempt(
    tx: Transaction,
    job: Job,
    *,
    from_states: Collection[JobState],
    due: datetime,
    now: datetime,
    **changes: Any,
) -> Job | None:
    """Within ``tx``: PENDING as attempt n+1, due at ``due``, if the job is still at
    attempt n in one of ``from_states``. The old attempt's row is left as it is.

    Returns the reopened job, or None when another transaction changed it first.
    """
    values: dict[str, Any] = {
        "attempt": job.attempt + 1,
        "next_attempt_at": due,
        "worker_id": None,
        "queued_at": None,
        "started_at": None,
        "deadline_at": None,
        **changes,
    }
    won = tx.jobs.compare_and_set(
        job.id,
        states=from_states,
        expected_attempt=job.attempt,
        state=JobState.PENDING,
        updated_at=now,
        **values,
    )
    if not won:
        return None
    return replace(job, state=JobState.PENDING, updated_at=now, **values)
