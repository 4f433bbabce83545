"""Cron schedules: add, list, show, pause, resume, remove, trigger, and the scheduler's
pass that fires the due ticks (docs/architecture.md, "Cron schedules").

A fire is a normal job, submitted by :func:`hodei.services.jobs.submission.submit_jobs`, with
the schedule's name as correlation id and an idempotency key made of the schedule and
the tick: a tick fired twice (two schedulers during a change of leader, a crash between
the submit and the record) gives the same job, and the ``schedule_fires`` row of that
tick is written once, with its ScheduleFired event.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from hodei.domain import transitions
from hodei.domain.events import Actor, DomainEvent, EventType
from hodei.domain.records import Job
from hodei.domain.schedules import (
    DEFAULT_CATCHUP,
    MISFIRE_GRACE,
    Catchup,
    Schedule,
    Trigger,
    check_catchup,
    check_name,
    check_paused,
    check_timezone,
    fire_key,
    plan_fires,
    schedule_event,
)
from hodei.domain.specs import JobSpec
from hodei.errors import (
    Conflict,
    HodeiError,
    InvalidInput,
    ProviderNotFound,
    ScheduleNotFound,
    ServiceUnavailable,
)
from hodei.services.jobs import cron
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import EventQuery, Fire, Store, Transaction

logger = logging.getLogger(__name__)

RECENT_FIRES = 10
"""Fires ``schedule show`` lists."""

DUE_PER_PASS = 100
"""Schedules one pass of the scheduler reads at a time."""


@dataclass(frozen=True)
class ScheduleView:
    """A schedule with its latest fires, newest first."""

    schedule: Schedule
    fires: list[Fire] = field(default_factory=list)


def _template(spec: JobSpec, name: str) -> dict[str, Any]:
    if spec.secret_env:
        # The scheduler would need the secret key to re-seal them on every fire.
        raise InvalidInput("a schedule cannot carry secret_env yet; use env, or a job of its own")
    if spec.idempotency_key:
        raise InvalidInput("a schedule's jobs get an idempotency key per tick; give none")
    if spec.correlation_id and spec.correlation_id != name:
        raise InvalidInput("a schedule's jobs take the schedule's name as correlation id")
    if spec.run_at is not None:
        # Counted once, from the add: every later fire would carry the same past time.
        raise InvalidInput("a schedule's jobs run at their tick; give no run_at (--in, --at)")
    if spec.after or spec.after_any:
        # Every fire would wait on the same, long finished, jobs.
        raise InvalidInput(
            "a schedule's jobs cannot wait for other jobs; give no after (--after, --after-any)"
        )
    data = spec.to_dict()
    data.pop("idempotency_key", None)
    data["correlation_id"] = name
    return data


def create_schedule(
    store: Store,
    clock: Clock,
    *,
    name: str,
    cron_expression: str,
    spec: JobSpec,
    timezone: str = "UTC",
    catchup: Catchup | str = DEFAULT_CATCHUP,
    paused: bool = False,
    actor: str,
) -> Schedule:
    """Store a new schedule (``Conflict`` if the name is taken) with ScheduleCreated."""
    name = check_name(name)
    expression = cron.check_expression(cron_expression)
    timezone = check_timezone(timezone)
    policy = check_catchup(catchup)
    paused = check_paused(paused)
    if not isinstance(spec, JobSpec):
        raise InvalidInput("a schedule's job must be a JobSpec")
    template = _template(spec.validated(), name)
    now = clock.now()
    first = cron.next_tick(expression, timezone, now)
    if first is None:
        raise InvalidInput(f"cron expression {expression!r} never matches a date")
    schedule = Schedule(
        id=uuid.uuid4(),
        name=name,
        cron=expression,
        timezone=timezone,
        catchup=policy,
        spec=template,
        paused=paused,
        next_fire_at=None if paused else first,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    with store.transaction() as tx:
        if tx.schedules.get_by_name(name) is not None:
            raise Conflict(f"a schedule named {name!r} exists already")
        check_provider(tx, spec.provider)
        tx.schedules.add(schedule)
        tx.events.add(
            schedule_event(
                schedule,
                EventType.SCHEDULE_CREATED,
                actor=actor,
                now=now,
                cron=expression,
                timezone=timezone,
                catchup=str(policy),
                paused=paused,
                next_fire_at=schedule.next_fire_at,
                spec=spec.summary(),
            )
        )
    logger.info("schedule %s created: %s (%s)", name, expression, timezone)
    return schedule


def check_provider(tx: Transaction, provider: str | None) -> None:
    """``ProviderNotFound`` for a provider that does not exist: every fire would fail,
    as a job naming it is refused."""
    if provider is not None and tx.providers.get_by_name(provider) is None:
        raise ProviderNotFound(f"no provider named {provider!r} (`hodei provider list` shows them)")


def list_schedules(store: Store) -> list[Schedule]:
    with store.reading() as tx:
        return tx.schedules.search()


def get_schedule(store: Store, name: str) -> ScheduleView:
    with store.reading() as tx:
        schedule = _find(tx, name)
        return ScheduleView(schedule, tx.schedules.fires(schedule.id, limit=RECENT_FIRES))


def _find(tx: Transaction, name: str) -> Schedule:
    found = tx.schedules.get_by_name(name) if isinstance(name, str) else None
    if found is None:
        raise ScheduleNotFound(f"no schedule named {str(name)[:63]!r} (`hodei schedule list`)")
    return found


def pause_schedule(store: Store, clock: Clock, name: str, *, actor: str) -> Schedule:
    """Stop firing; ``Conflict`` if it is paused already."""
    now = clock.now()
    with store.transaction() as tx:
        schedule = _find(tx, name)
        # Guarded by its state as read: of two pauses at once, one wins, one Conflict.
        if schedule.paused or not tx.apply(
            transitions.pause_schedule(schedule, actor=actor, now=now)
        ):
            raise Conflict(f"schedule {name!r} is paused already")
    return replace(schedule, paused=True, next_fire_at=None, updated_at=now)


def resume_schedule(store: Store, clock: Clock, name: str, *, actor: str) -> Schedule:
    """Fire again from the next tick after now: ticks while paused are not caught up."""
    now = clock.now()
    with store.transaction() as tx:
        schedule = _find(tx, name)
        if not schedule.paused:
            raise Conflict(f"schedule {name!r} is not paused")
        first = cron.next_tick(schedule.cron, schedule.timezone, now)
        resume = transitions.resume_schedule(schedule, next_fire_at=first, actor=actor, now=now)
        if not tx.apply(resume):
            raise Conflict(f"schedule {name!r} is not paused")
    return replace(schedule, paused=False, next_fire_at=first, updated_at=now)


def remove_schedule(store: Store, clock: Clock, name: str, *, actor: str) -> Schedule:
    """Delete the schedule and its fire records; the jobs it submitted stay."""
    now = clock.now()
    with store.transaction() as tx:
        schedule = _find(tx, name)
        tx.schedules.delete(schedule.id)
        tx.events.add(schedule_event(schedule, EventType.SCHEDULE_REMOVED, actor=actor, now=now))
    return schedule


def trigger_schedule(
    store: Store, clock: Clock, publisher: TaskPublisher, name: str, *, actor: str
) -> Job:
    """Fire now, outside the cron (a paused schedule too); the next tick is unchanged."""
    with store.reading() as tx:
        schedule = _find(tx, name)
    job = _fire(store, clock, publisher, schedule, clock.now(), Trigger.MANUAL, actor)
    return job


@dataclass(frozen=True)
class FireReport:
    """What one pass of the scheduler did."""

    fired: list[tuple[str, datetime, str]] = field(default_factory=list)  # name, tick, job
    skipped: dict[str, int] = field(default_factory=dict)  # name: missed ticks
    failed: dict[str, str] = field(default_factory=dict)  # name: why its fire failed


def fire_due(store: Store, clock: Clock, publisher: TaskPublisher) -> FireReport:
    """Fire every due tick of every active schedule (the leading scheduler calls this
    about every second and when a tick is due)."""
    report = FireReport()
    now = clock.now()
    with store.reading() as tx:
        due = tx.schedules.due(now, limit=DUE_PER_PASS)
    for schedule in due:
        fired: list[tuple[datetime, Job]] = []
        try:
            _fire_schedule(store, clock, publisher, schedule, now, report, fired)
        except ServiceUnavailable:
            raise  # the database or broker down: not this schedule's fault, nor skipped
        except HodeiError as exc:
            # One schedule that cannot fire (its provider removed, say) must not stop
            # the others: skip its due ticks and say why on its timeline. The ticks it
            # fired before the failure are committed: they stay its last fire.
            _record_failure(store, clock, schedule, now, exc, report, fired)
    return report


def _fire_schedule(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    schedule: Schedule,
    now: datetime,
    report: FireReport,
    fired: list[tuple[datetime, Job]],
) -> None:
    """Fire the schedule's due ticks, appending each fired (tick, job) to ``fired`` as
    it is committed, so a failure at a later tick knows which ones went out."""
    first = schedule.next_fire_at
    assert first is not None
    ticks = cron.due_ticks(schedule.cron, schedule.timezone, first, now, MISFIRE_GRACE)
    plan = plan_fires(ticks.on_time, ticks.missed, ticks.newest_missed, schedule.catchup)
    for tick, trigger in plan.fire:
        job = _fire(store, clock, publisher, schedule, tick, trigger, Actor.SCHEDULER)
        report.fired.append((schedule.name, tick, str(job.id)))
        fired.append((tick, job))
    changes: dict[str, Any] = {"next_fire_at": ticks.next_after, "updated_at": clock.now()}
    changes.update(_last_fire(fired))
    events: list[DomainEvent] = []
    if plan.skipped:
        report.skipped[schedule.name] = plan.skipped
        events.append(
            schedule_event(
                schedule,
                EventType.SCHEDULE_SKIPPED,
                actor=Actor.SCHEDULER,
                now=clock.now(),
                missed=plan.skipped,
                counted_all=ticks.counted_all,
                first_missed=ticks.first_missed,
                newest_missed=ticks.newest_missed,
                catchup=str(schedule.catchup),
                reason="no scheduler fired them in time (down, or no leader)",
            )
        )
        logger.warning(
            "schedule %s: %d missed tick(s) skipped (catch-up %s)",
            schedule.name,
            plan.skipped,
            schedule.catchup,
        )
    with store.transaction() as tx:
        # Guarded on the tick this pass started from: a second scheduler that got here
        # first has moved it, and its events are the ones kept.
        if tx.schedules.advance(schedule.id, first, **changes) and events:
            tx.events.add(*events)


def _record_failure(
    store: Store,
    clock: Clock,
    schedule: Schedule,
    now: datetime,
    exc: HodeiError,
    report: FireReport,
    fired: list[tuple[datetime, Job]],
) -> None:
    """Move the schedule past its due ticks and write ScheduleFailed, once per distinct
    reason: the same failure at every tick would flood the timeline. The ticks in
    ``fired`` (fired this pass before the failure) are its last fire, not missed."""
    first = schedule.next_fire_at
    assert first is not None
    reason = str(exc)
    report.failed[schedule.name] = reason
    ticks = cron.due_ticks(schedule.cron, schedule.timezone, first, now, MISFIRE_GRACE)
    missed = ticks.missed + len(ticks.on_time) - len(fired)
    with store.transaction() as tx:
        latest = tx.events.search(
            EventQuery(aggregate_ids=[schedule.id], limit=1, newest_first=True)
        )
        repeated = bool(latest) and (
            latest[0].event_type == EventType.SCHEDULE_FAILED
            and latest[0].payload.get("reason") == reason
        )
        advanced = tx.schedules.advance(
            schedule.id,
            first,
            next_fire_at=ticks.next_after,
            updated_at=clock.now(),
            **_last_fire(fired),
        )
        if advanced and not repeated:
            tx.events.add(
                schedule_event(
                    schedule,
                    EventType.SCHEDULE_FAILED,
                    actor=Actor.SCHEDULER,
                    now=clock.now(),
                    reason=reason,
                    error=type(exc).__name__,
                    missed=missed,
                    first_tick=first,
                )
            )
    if advanced and not repeated:
        logger.warning("schedule %s cannot fire, tick(s) skipped: %s", schedule.name, reason)
    else:
        logger.debug("schedule %s cannot fire, tick(s) skipped: %s", schedule.name, reason)


def _last_fire(fired: list[tuple[datetime, Job]]) -> dict[str, Any]:
    """The schedule's last_fire_at/last_job_id changes for the ticks fired this pass."""
    if not fired:
        return {}
    tick, job = fired[-1]
    return {"last_fire_at": tick, "last_job_id": job.id}


def _fire(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    schedule: Schedule,
    tick: datetime,
    trigger: Trigger,
    actor: str,
) -> Job:
    """Submit the tick's job (or find it) and record the fire with its event, once."""
    spec = _spec_for(schedule, tick)
    submitted = submit_jobs(store, clock, publisher, [spec], actor=actor)[0]
    job = submitted.job
    now = clock.now()
    with store.transaction() as tx:
        fire = Fire(schedule.id, tick, job.id, str(trigger), now)
        if tx.schedules.record_fire(fire):
            tx.events.add(
                schedule_event(
                    schedule,
                    EventType.SCHEDULE_FIRED,
                    actor=actor,
                    now=now,
                    fire_time=tick,
                    job_id=job.id,
                    trigger=str(trigger),
                    late_s=round(max((now - tick).total_seconds(), 0.0), 3),
                )
            )
            if trigger is Trigger.MANUAL:
                tx.schedules.update(schedule.id, last_fire_at=tick, last_job_id=job.id)
    logger.info(
        "schedule %s fired for %s (%s): job %s%s",
        schedule.name,
        tick.isoformat(),
        trigger,
        job.id,
        " (already submitted)" if submitted.existing else "",
        extra={"job_id": str(job.id), "correlation_id": schedule.name},
    )
    return job


def _spec_for(schedule: Schedule, tick: datetime) -> JobSpec:
    data = dict(schedule.spec)
    env = dict(data.get("env") or {})
    # The job can tell which tick it is for (a backup named by its scheduled time).
    env["HODEI_SCHEDULE"] = schedule.name
    env["HODEI_SCHEDULED_AT"] = tick.isoformat()
    data.update(env=env, correlation_id=schedule.name, idempotency_key=fire_key(schedule.id, tick))
    return JobSpec.from_dict(data)


def next_due_at(store: Store) -> datetime | None:
    with store.reading() as tx:
        return tx.schedules.next_due_at()
