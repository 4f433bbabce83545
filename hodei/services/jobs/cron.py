"""Cron arithmetic, by cronsim (docs/architecture.md, "Dependencies and why").

Expressions have five fields (minute hour day-of-month month day-of-week) or six with a
leading seconds field. Ticks are computed in the schedule's time zone and handed out
in UTC. Daylight-saving changes follow Debian's cron, as cronsim does: a time that
does not exist (spring forward) fires once at the moment the clocks jump, a time that
happens twice (fall back) fires once, except for expressions that run more often than
hourly, which fire at every real instant that matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from hodei.domain.schedules import MAX_CRON_LENGTH
from hodei.errors import InvalidInput


def check_expression(expression: object) -> str:
    """The expression, normalised to single spaces, or a one-line InvalidInput."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("give a cron expression, such as '*/5 * * * *'")
    text = " ".join(expression.split())
    if len(text) > MAX_CRON_LENGTH or "\x00" in text:
        raise InvalidInput(f"a cron expression is at most {MAX_CRON_LENGTH} characters")
    fields = len(text.split(" "))
    if fields not in (5, 6):
        raise InvalidInput(
            f"bad cron expression {text[:60]!r}: it has {fields} fields; use 5"
            " (minute hour day month weekday) or 6 (seconds first)"
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise InvalidInput(f"bad cron expression {text[:60]!r}: {exc}") from None
    return text


def next_tick(expression: str, timezone: str, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (UTC), or None if there is none within
    cronsim's 50 years (``0 0 30 2 *``)."""
    local = after.astimezone(ZoneInfo(timezone))
    try:
        tick = next(CronSim(expression, local))
    except StopIteration:
        return None
    return tick.astimezone(UTC)


MAX_COUNTED = 10_000
"""Missed ticks counted one by one at most; past that the count is a lower bound."""


def newest_tick_at_or_before(expression: str, timezone: str, when: datetime) -> datetime | None:
    """The last tick at or before ``when`` (UTC)."""
    local = when.astimezone(ZoneInfo(timezone))
    if not local.microsecond:  # cronsim counts a time with microseconds as a tick itself
        local += timedelta(microseconds=1)
    try:
        tick = next(CronSim(expression, local, reverse=True))
    except StopIteration:
        return None
    return tick.astimezone(UTC)


@dataclass(frozen=True)
class DueTicks:
    """The ticks of one schedule from its first unhandled tick up to now."""

    missed: int  # ticks older than the grace (a lower bound when counted_all is False)
    counted_all: bool
    first_missed: datetime | None
    newest_missed: datetime | None
    on_time: list[datetime]  # ticks at most ``grace`` old, oldest first
    next_after: datetime | None  # the first tick after now


def due_ticks(
    expression: str, timezone: str, first: datetime, now: datetime, grace: timedelta
) -> DueTicks:
    """Walk the ticks from ``first`` (a tick itself) to ``now``. A long outage of a
    schedule that ticks every second is not walked tick by tick: past
    :data:`MAX_COUNTED` missed ticks the walk jumps to the grace window."""
    boundary = now - grace
    missed, counted_all = 0, True
    first_missed: datetime | None = None
    newest_missed: datetime | None = None
    tick: datetime | None = first
    while tick is not None and tick < boundary:
        if missed == MAX_COUNTED:
            counted_all = False
            just_before = boundary - timedelta(microseconds=1)  # missed: strictly older
            newest_missed = newest_tick_at_or_before(expression, timezone, just_before)
            tick = next_tick(expression, timezone, newest_missed or boundary)
            break
        missed += 1
        first_missed = first_missed or tick
        newest_missed = tick
        tick = next_tick(expression, timezone, tick)
    on_time: list[datetime] = []
    while tick is not None and tick <= now:
        on_time.append(tick)
        tick = next_tick(expression, timezone, tick)
    return DueTicks(missed, counted_all, first_missed, newest_missed, on_time, tick)
