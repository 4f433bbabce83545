"""Wall-clock time as a port, so tests and services agree on "now"."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The real clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
