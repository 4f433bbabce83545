"""Which output lines of an attempt are kept: all of them up to a budget, past it the
head and the tail with one marker line between them that says what was dropped.

The head (the first half of the budget) is written as it comes. Once a line does not fit
in it, every later line waits in a buffer that holds at most the other half, the oldest
lines leaving it as new ones come; what is left of it when the command has ended is the
tail, written after the marker. So a worker holds at most half the budget per running
job, and output past the head reaches the database (and ``logs --follow``) only when the
attempt ends. hodei's own notes (the "system" stream) are never dropped nor counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hodei.runtime.runner import OutputLine


@dataclass(frozen=True)
class Budget:
    """What an attempt keeps: ``max_bytes`` of output and ``max_lines`` lines; 0 is no limit."""

    max_bytes: int
    max_lines: int = 0

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_lines < 0:
            raise ValueError("an output budget cannot be negative")

    def head(self) -> tuple[int, int]:
        return self.max_bytes - self.max_bytes // 2, self.max_lines - self.max_lines // 2

    def tail(self) -> tuple[int, int]:
        return self.max_bytes // 2, self.max_lines // 2

    def describe(self) -> str:
        parts = [f"{self.max_bytes} bytes"] if self.max_bytes else []
        parts += [f"{self.max_lines} lines"] if self.max_lines else []
        return " and ".join(parts)


@dataclass
class _Span:
    """Lines and bytes, against a limit pair (0: none)."""

    max_bytes: int
    max_lines: int
    bytes: int = 0
    lines: int = 0

    def fits(self, line: OutputLine) -> bool:
        return (not self.max_bytes or self.bytes + len(line.data) <= self.max_bytes) and (
            not self.max_lines or self.lines + 1 <= self.max_lines
        )

    def over(self) -> bool:
        return bool(
            (self.max_bytes and self.bytes > self.max_bytes)
            or (self.max_lines and self.lines > self.max_lines)
        )

    def add(self, line: OutputLine, sign: int = 1) -> None:
        self.bytes += sign * len(line.data)
        self.lines += sign


@dataclass
class Retention:
    """Feed it every batch (:meth:`admit` says what to write now); :meth:`finish` gives
    what is still to write when the command has ended."""

    budget: Budget
    _head: _Span = field(init=False)
    _tail: _Span = field(init=False)
    _held: deque[OutputLine] = field(init=False, default_factory=deque)
    _notes: list[OutputLine] = field(init=False, default_factory=list)  # left the buffer
    _in_tail: bool = field(init=False, default=False)
    dropped_lines: int = field(init=False, default=0)
    dropped_bytes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._head = _Span(*self.budget.head())
        self._tail = _Span(*self.budget.tail())

    def admit(self, batch: Sequence[OutputLine]) -> list[OutputLine]:
        now: list[OutputLine] = []
        for line in batch:
            if not self._in_tail and (line.stream == "system" or self._head.fits(line)):
                if line.stream != "system":
                    self._head.add(line)
                now.append(line)
                continue
            self._in_tail = True
            self._held.append(line)
            if line.stream != "system":
                self._tail.add(line)
            while self._tail.over():
                old = self._held.popleft()
                if old.stream == "system":
                    self._notes.append(old)
                    continue
                self._tail.add(old, -1)
                self.dropped_lines += 1
                self.dropped_bytes += len(old.data)
        return now

    def finish(self) -> list[OutputLine]:
        held, self._held = list(self._held), deque()
        notes, self._notes = self._notes, []
        if not self.dropped_lines:
            return notes + held
        marker = OutputLine(
            "system",
            f"hodei: output over this attempt's limit of {self.budget.describe()}:"
            f" {self.dropped_lines} lines ({self.dropped_bytes} bytes) dropped here,"
            " between the first and the last lines",
            held[0].ts if held else datetime.now(UTC),
        )
        return [marker, *notes, *held]
