"""Wall-clock time as a port, so tests and services agree on "now" (the real clock is
``hodei.bootstrap.SystemClock``)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...
