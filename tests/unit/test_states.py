"""The job transition table (docs/architecture.md, "States")."""

import itertools

import pytest

from hodei.domain.states import TERMINAL_STATES, JobState, allowed, ensure_transition
from hodei.errors import InvalidTransition

LEGAL = {
    (JobState.PENDING, JobState.QUEUED),
    (JobState.PENDING, JobState.CANCELLED),
    (JobState.PENDING, JobState.FAILED),  # queue timeout / no provider
    (JobState.QUEUED, JobState.RUNNING),
    (JobState.QUEUED, JobState.CANCELLED),
    (JobState.QUEUED, JobState.PENDING),
    (JobState.QUEUED, JobState.FAILED),  # provisioning failed permanently
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.TIMED_OUT),
    (JobState.RUNNING, JobState.CANCELLED),
    (JobState.RUNNING, JobState.PENDING),  # retry scheduled or requeued
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobState, JobState)))
def test_only_the_table_s_transitions_are_allowed(old: JobState, new: JobState) -> None:
    assert allowed(old, new) == ((old, new) in LEGAL)
    if (old, new) not in LEGAL:
        with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
            ensure_transition(old, new)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_never_change_by_themselves(terminal: JobState) -> None:
    assert not any(allowed(terminal, new) for new in JobState)


def test_only_an_explicit_retry_reopens_failed_timed_out_or_cancelled_jobs() -> None:
    for state in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED):
        assert allowed(state, JobState.PENDING, manual_retry=True)
    assert not allowed(JobState.SUCCEEDED, JobState.PENDING, manual_retry=True)
    assert not allowed(JobState.FAILED, JobState.RUNNING, manual_retry=True)
