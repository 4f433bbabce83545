"""``--at TIME`` and ``--in DURATION``: when a job is due, as the user writes it."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from hodei.errors import InvalidInput

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)?")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
MAX_DELAY = timedelta(days=366)


def parse_delay(text: str) -> timedelta:
    """``90`` or ``90s``, ``10m``, ``2h``, ``1d``, ``1h30m``: a delay of at most a year."""
    rest = text.strip().lower().replace(" ", "")
    if not rest:
        raise InvalidInput("--in needs a duration such as 90s, 10m, 2h or 1h30m")
    total = 0.0
    while rest:
        match = _DURATION.match(rest)
        if match is None or not match.group(0):
            raise InvalidInput(f"--in: not a duration: {text!r} (use e.g. 90s, 10m, 2h or 1h30m)")
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        rest = rest[match.end() :]
    delay = timedelta(seconds=total)
    if delay > MAX_DELAY:
        raise InvalidInput(f"--in: {text!r} is more than a year away")
    return delay


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (``2030-01-02T09:00``, with or without a zone: without, the
    local one), or ``HH:MM[:SS]``: the next such time of day, local. ``now`` is aware."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            of_day = time.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"--at: not a time: {text!r} (use e.g. 14:30, 2030-01-02T09:00 or "
                "2030-01-02T09:00+01:00)"
            ) from None
        local_now = now.astimezone()
        moment = datetime.combine(local_now.date(), of_day, tzinfo=of_day.tzinfo)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # the local zone, DST included
        if moment <= local_now:
            moment = (
                datetime.combine(local_now.date() + timedelta(days=1), of_day).astimezone()
                if of_day.tzinfo is None
                else moment + timedelta(days=1)
            )
        return moment
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment


def due_time(at: str | None, delay: str | None, now: datetime) -> datetime | None:
    """The due time from ``--at`` or ``--in`` (not both)."""
    if at is not None and delay is not None:
        raise InvalidInput("give --at or --in, not both")
    if at is not None:
        return parse_time(at, now)
    if delay is not None:
        return now + parse_delay(delay)
    return None
