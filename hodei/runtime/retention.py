"""Which output lines of an attempt are kept: all of them up to a budget, past it the
head and the tail with one marker line between them that says what was dropped.

The tail is the last half of the budget, but at most TAIL_MAX_BYTES and TAIL_MAX_LINES;
the head is the rest. The head is written as it comes. Once a line does not fit in it,
every later line waits in a buffer that holds at most the tail, the oldest lines
leaving it as new ones come; what is left of it when the command has ended is the
tail, written after the marker. So a worker holds at most one tail per running job
(8 MiB and 100,000 lines, with the default budget of 64 MiB), and output past the
head reaches the database (and ``logs --follow``) only when the attempt ends. hodei's
own notes (the "system" stream) are never dropped nor counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hodei.runtime.runner import OutputLine

# The held tail's own bounds, whatever the budget: it lives in the worker's memory (a
# line costs about 150 bytes of bookkeeping besides its own bytes), one per running job.
TAIL_MAX_BYTES = 8 * 1024 * 1024
TAIL_MAX_LINES = 100_000


@dataclass(frozen=True)
class Budget:
    """What an attempt keeps: ``max_bytes`` of output and ``max_lines`` lines; 0 is no limit."""

    max_bytes: int
    max_lines: int = 0

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_lines < 0:
            raise ValueError("an output budget cannot be negative")

    def tail(self) -> tuple[int, int]:
        """Bytes and lines of the tail: the last half of the budget, within the tail's
        own bounds."""
        return (
            min(self.max_bytes // 2, TAIL_MAX_BYTES) if self.max_bytes else TAIL_MAX_BYTES,
            min(self.max_lines // 2, TAIL_MAX_LINES) if self.max_lines else TAIL_MAX_LINES,
        )

    def head(self) -> tuple[int | None, int | None]:
        """Bytes and lines of the head (None: no limit): the budget less the tail."""
        tail_bytes, tail_lines = self.tail()
        return (
            self.max_bytes - tail_bytes if self.max_bytes else None,
            self.max_lines - tail_lines if self.max_lines else None,
        )

    @property
    def limited(self) -> bool:
        return bool(self.max_bytes or self.max_lines)

    def describe(self) -> str:
        parts = [f"{self.max_bytes} bytes"] if self.max_bytes else []
        parts += [f"{self.max_lines} lines"] if self.max_lines else []
        return " and ".join(parts)


@dataclass
class _Span:
    """Lines and bytes so far, against their limits (None: none)."""

    max_bytes: int | None
    max_lines: int | None
    bytes: int = 0
    lines: int = 0

    def fits(self, size: int) -> bool:
        return (self.max_bytes is None or self.bytes + size <= self.max_bytes) and (
            self.max_lines is None or self.lines + 1 <= self.max_lines
        )

    def over(self) -> bool:
        return (self.max_bytes is not None and self.bytes > self.max_bytes) or (
            self.max_lines is not None and self.lines > self.max_lines
        )

    def add(self, size: int, sign: int = 1) -> None:
        self.bytes += sign * size
        self.lines += sign


# A held line: its stream, time and bytes; its text is made again when it is written,
# so the buffer does not hold the output twice.
_Held = tuple[str, datetime, bytes]


@dataclass
class Retention:
    """Feed it every batch (:meth:`admit` says what to write now); :meth:`finish` gives
    what is still to write when the command has ended."""

    budget: Budget
    _head: _Span = field(init=False)
    _tail: _Span = field(init=False)
    _held: deque[_Held] = field(init=False, default_factory=deque)
    _notes: list[_Held] = field(init=False, default_factory=list)  # left the buffer
    _in_tail: bool = field(init=False, default=False)
    dropped_lines: int = field(init=False, default=0)
    dropped_bytes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._head = _Span(*self.budget.head())
        self._tail = _Span(*self.budget.tail())

    def admit(self, batch: Sequence[OutputLine]) -> list[OutputLine]:
        if not self.budget.limited:
            return list(batch)
        now: list[OutputLine] = []
        for line in batch:
            size = len(line.data)
            if not self._in_tail and (line.stream == "system" or self._head.fits(size)):
                if line.stream != "system":
                    self._head.add(size)
                now.append(line)
                continue
            self._in_tail = True
            self._held.append((line.stream, line.ts, line.data))
            if line.stream != "system":
                self._tail.add(size)
            while self._tail.over():
                old = self._held.popleft()
                if old[0] == "system":
                    self._notes.append(old)
                    continue
                self._tail.add(len(old[2]), -1)
                self.dropped_lines += 1
                self.dropped_bytes += len(old[2])
        return now

    def finish(self) -> list[OutputLine]:
        held = [OutputLine.of_bytes(*h) for h in self._held]
        notes = [OutputLine.of_bytes(*h) for h in self._notes]
        self._held, self._notes = deque(), []
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
