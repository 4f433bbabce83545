"""Cron schedules: the record, its checks, its events, and which ticks to fire.

A schedule submits a normal job on every tick of its cron expression (see
``hodei.services.jobs.schedules``). The cron arithmetic itself is a library's
(``hodei.services.jobs.cron``); what to do with ticks that were missed is decided here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hodei.domain.events import Aggregate, DomainEvent, EventType
from hodei.errors import InvalidInput

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
"""A schedule's name: it is also the correlation id of every job it submits."""

MAX_CRON_LENGTH = 200

MISFIRE_GRACE = timedelta(seconds=60)
"""A tick fired at most this late is on time (a scheduler restarting, a leader taking
over): it is fired as usual. Older ticks were missed and follow the catch-up policy."""

MAX_FIRES_PER_PASS = 100
"""On-time ticks fired in one pass at most; a schedule ticking every second after a long
pause is not allowed to flood the queue in one go (the rest count as missed)."""


class Catchup(StrEnum):
    """What a schedule does with ticks missed while no scheduler ran (or led)."""

    SKIP = "skip"  # record them as skipped, fire nothing for them
    ONCE = "once"  # fire one job for the latest of them, record the others as skipped


DEFAULT_CATCHUP = Catchup.ONCE


class Trigger(StrEnum):
    """Why a schedule fired."""

    CRON = "cron"  # a tick, on time
    CATCHUP = "catchup"  # the latest missed tick, with --catchup once
    MANUAL = "manual"  # `hodei schedule trigger`


@dataclass(frozen=True)
class Schedule:
    """A named cron expression and the job it submits on each tick."""

    id: UUID
    name: str
    cron: str
    timezone: str
    catchup: Catchup
    spec: Mapping[str, Any]  # JobSpec.to_dict() of the job each fire submits
    paused: bool
    next_fire_at: datetime | None  # the first tick not handled yet (UTC); None if paused
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_fire_at: datetime | None = None
    last_job_id: UUID | None = None


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(
            "a schedule name is 1-63 letters, digits and _.-, starting with a letter or digit"
        )
    return name


def check_timezone(name: object) -> str:
    """An IANA time zone name (``Europe/Madrid``, ``UTC``), else InvalidInput."""
    if not isinstance(name, str) or not name or len(name) > 64 or "\x00" in name:
        raise InvalidInput("a time zone is an IANA name such as UTC or Europe/Madrid")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {name[:64]!r} (an IANA name such as UTC or Europe/Madrid)"
        ) from None
    return name


def check_catchup(value: object) -> Catchup:
    if isinstance(value, Catchup):
        return value
    try:
        return Catchup(str(value).strip().lower())
    except ValueError:
        raise InvalidInput(
            f"unknown catch-up policy {str(value)[:20]!r}; use one of"
            f" {', '.join(c.value for c in Catchup)}"
        ) from None


def check_paused(value: object) -> bool:
    """A bool, not a truthy string: the database would refuse ``'yes'`` with its SQL."""
    if not isinstance(value, bool):
        raise InvalidInput(f"paused is true or false, not {str(value)[:20]!r}")
    return value


@dataclass(frozen=True)
class FirePlan:
    """What one pass does with the due ticks of a schedule."""

    fire: tuple[tuple[datetime, Trigger], ...]  # ticks to submit a job for, oldest first
    skipped: int  # missed ticks nobody fires (a lower bound if the count stopped)


def plan_fires(
    on_time: Sequence[datetime],
    missed: int,
    newest_missed: datetime | None,
    catchup: Catchup,
    *,
    limit: int = MAX_FIRES_PER_PASS,
) -> FirePlan:
    """Which due ticks fire. ``on_time``: ticks at most :data:`MISFIRE_GRACE` old, each
    fired once (the newest ``limit``; older ones count as missed). ``missed`` ticks are
    older: with ``skip`` none fires; with ``once`` the newest missed tick fires, as a
    catch-up, before the on-time ones (as Airflow's latest run without catchup: the
    outage is made up for once, whether or not ticks since then are still on time)."""
    kept = list(on_time[-limit:]) if limit > 0 else []
    skipped = missed + len(on_time) - len(kept)
    fire = [(t, Trigger.CRON) for t in kept]
    if catchup is Catchup.ONCE and missed and newest_missed is not None:
        fire.insert(0, (newest_missed, Trigger.CATCHUP))
        skipped -= 1
    return FirePlan(tuple(fire), skipped)


def fire_key(schedule_id: UUID, fire_time: datetime) -> str:
    """The idempotency key of the job a fire submits: one job per (schedule, tick)."""
    return f"schedule:{schedule_id}:{fire_time.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def schedule_event(
    schedule: Schedule,
    event_type: EventType,
    *,
    actor: str,
    now: datetime,
    **payload: Any,
) -> DomainEvent:
    """An event on a schedule's timeline; its correlation id is the schedule's name, so
    ``hodei job timeline --correlation-id NAME`` shows it beside the jobs it fired."""
    body: dict[str, Any] = {"name": schedule.name}
    for key, value in payload.items():
        body[key] = value.isoformat() if isinstance(value, datetime) else value
    return DomainEvent(
        event_type=str(event_type),
        aggregate_type=str(Aggregate.SCHEDULE),
        aggregate_id=schedule.id,
        actor=actor,
        occurred_at=now,
        payload={k: str(v) if isinstance(v, UUID) else v for k, v in body.items()},
        correlation_id=schedule.name,
    )
