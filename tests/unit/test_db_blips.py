"""Claims and finishes ride out a database blip instead of losing the attempt."""

from __future__ import annotations

import pytest

from hodei.errors import DatabaseUnavailable, InvalidJobSpec
from hodei.queueing.signals import _retrying_db_blips


def test_a_blip_is_retried_until_the_database_answers() -> None:
    calls: list[int] = []

    def flaky(a: int, *, b: int) -> int:
        calls.append(a)
        if len(calls) < 3:
            raise DatabaseUnavailable("connection refused")
        return a + b

    assert _retrying_db_blips(60.0, flaky, 1, b=2) == 3
    assert calls == [1, 1, 1]


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise InvalidJobSpec("not a database problem")

    with pytest.raises(InvalidJobSpec):
        _retrying_db_blips(60.0, broken)
    assert calls == [1]
