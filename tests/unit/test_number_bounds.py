"""A number out of range is told its range as a person would write it: no ``9.22337e+18``
for the storage's 64-bit top, no ``3.1536e+07`` for a year of seconds."""

from __future__ import annotations

import click
import pytest

from hodei.cli.params import id_range
from hodei.domain.inputs import number_problem
from hodei.errors import InvalidInput
from hodei.sdk_base import MAX_ID, check_seconds, checked_int


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: checked_int(-1, "tail"), "tail must be 0 or more, got -1"),
        (lambda: checked_int(0, "limit", 1, MAX_ID), "limit must be 1 or more, got 0"),
        (
            lambda: checked_int(2**63, "after_id"),
            f"after_id must be at most {MAX_ID}, got 9223372036854775808",
        ),
        (
            lambda: checked_int(10**400, "limit", 1, MAX_ID),
            f"limit must be at most {MAX_ID}, got a number too large",
        ),
        (lambda: checked_int(0, "limit", 1, 1000), "limit must be between 1 and 1000, got 0"),
        (lambda: check_seconds(-1, "timeout"), "timeout must be between 0 and 31536000, got -1"),
        (
            lambda: check_seconds(4e7, "poll_s"),
            "poll_s must be between 0 and 31536000, got 40000000",
        ),
    ],
)
def test_bounds_read_naturally(call: object, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        call()  # type: ignore[operator]
    assert str(raised.value) == message


def test_small_and_fractional_bounds_keep_their_units() -> None:
    assert number_problem(0.1, 0.5, 2.5, unit="s") == "must be between 0.5s and 2.5s, got 0.1s"
    assert number_problem(7e6, 1, 604800, unit="s") == (
        "must be between 1s and 604800s, got 7000000s"
    )
    low = -(2**63)
    assert number_problem(low - 1, low, 5, whole=True) == (f"must be at least {low}, got {low - 1}")
    assert number_problem(6, -(2**63), 5, whole=True) == "must be 5 or less, got 6"


def test_an_id_option_names_its_floor_not_the_storage_top() -> None:
    with pytest.raises(click.BadParameter) as low:
        id_range(0).convert("-1", None, None)
    assert "-1 is not in the range x>=0" in low.value.message
    with pytest.raises(click.BadParameter) as high:
        id_range(1).convert("9" * 30, None, None)
    assert f"is too large (at most {MAX_ID})" in high.value.message
    assert id_range(1).convert(str(MAX_ID), None, None) == MAX_ID
