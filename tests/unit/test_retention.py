"""What an attempt keeps of its output: all of it within the budget, past it the head,
one marker and the tail; hodei's own notes always."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hodei.runtime import retention
from hodei.runtime.retention import Budget, Retention
from hodei.runtime.runner import OutputLine

TS = datetime(2026, 12, 5, tzinfo=UTC)


def lines(*texts: str, stream: str = "stdout") -> list[OutputLine]:
    return [OutputLine(stream, t, TS) for t in texts]


def kept(retention: Retention, batches: list[list[OutputLine]]) -> list[tuple[str, str]]:
    out = [line for batch in batches for line in retention.admit(batch)]
    return [(line.stream, line.line) for line in out + retention.finish()]


def test_within_the_budget_everything_is_written_as_it_comes() -> None:
    retention = Retention(Budget(max_bytes=100))
    assert [ln.line for ln in retention.admit(lines("a", "b"))] == ["a", "b"]
    assert retention.finish() == []


def test_no_budget_keeps_everything() -> None:
    retention = Retention(Budget(max_bytes=0, max_lines=0))
    many = lines(*(str(i) for i in range(10_000)))
    assert retention.admit(many) == many
    assert retention.finish() == []


def test_past_the_budget_the_head_and_the_tail_stay_with_one_marker() -> None:
    # Each line is 2 bytes ("x\n"); 6 bytes keep a head of 3 lines and a tail of 3.
    retention = Retention(Budget(max_bytes=12))
    got = kept(retention, [lines("1", "2", "3", "4"), lines("5", "6", "7"), lines("8", "9")])
    assert got == [
        ("stdout", "1"),
        ("stdout", "2"),
        ("stdout", "3"),
        (
            "system",
            "hodei: output over this attempt's limit of 12 bytes: 3 lines (6 bytes) dropped"
            " here, between the first and the last lines",
        ),
        ("stdout", "7"),
        ("stdout", "8"),
        ("stdout", "9"),
    ]


def test_output_just_over_the_head_but_within_the_budget_drops_nothing() -> None:
    retention = Retention(Budget(max_bytes=8))
    assert kept(retention, [lines("1", "2", "3", "4")]) == [("stdout", str(i)) for i in range(1, 5)]


def test_a_line_budget_works_alone_and_names_itself() -> None:
    retention = Retention(Budget(max_bytes=0, max_lines=4))
    got = kept(retention, [lines(*"abcdef")])
    assert [text for _, text in got] == [
        "a",
        "b",
        "hodei: output over this attempt's limit of 4 lines: 2 lines (4 bytes) dropped here,"
        " between the first and the last lines",
        "e",
        "f",
    ]


def test_system_notes_are_never_dropped_nor_counted() -> None:
    retention = Retention(Budget(max_bytes=8))
    got = kept(
        retention,
        [
            lines("1", "2", "3"),
            lines("hodei: timeout", stream="system"),
            lines("4", "5", "6"),
        ],
    )
    assert got == [
        ("stdout", "1"),
        ("stdout", "2"),
        ("system", got[2][1]),
        ("system", "hodei: timeout"),
        ("stdout", "5"),
        ("stdout", "6"),
    ]
    assert got[2][1].startswith("hodei: output over this attempt's limit of 8 bytes: 2 lines")


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        Budget(max_bytes=-1)


def test_the_tail_is_half_the_budget_within_its_own_bounds() -> None:
    mib = 1024 * 1024
    assert (Budget(64 * mib).head(), Budget(64 * mib).tail()) == (
        (56 * mib, None),
        (8 * mib, 100_000),
    )
    assert (Budget(10_000).head(), Budget(10_000).tail()) == ((5_000, None), (5_000, 100_000))
    assert (Budget(0, 10).head(), Budget(0, 10).tail()) == ((None, 5), (8 * mib, 5))


def test_the_held_tail_never_grows_past_its_line_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "TAIL_MAX_LINES", 3)
    got = kept(Retention(Budget(max_bytes=20)), [lines(*"abcdefghijkl")])
    assert [text for _, text in got] == [
        *"abcde",
        "hodei: output over this attempt's limit of 20 bytes: 4 lines (8 bytes) dropped here,"
        " between the first and the last lines",
        *"jkl",
    ]
