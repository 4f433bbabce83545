"""Cron schedules: the tick arithmetic (DST in Europe/Madrid), the missed-tick policy,
and the use cases on the in-memory store (a tick fired twice makes one job)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hodei.domain.events import EventType
from hodei.domain.records import Provider
from hodei.domain.schedules import Catchup, Trigger, plan_fires
from hodei.domain.specs import JobSpec
from hodei.errors import Conflict, InvalidInput, ScheduleNotFound
from hodei.services.jobs import cron
from hodei.services.jobs.schedules import (
    create_schedule,
    fire_due,
    get_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    trigger_schedule,
)
from hodei.services.ports.store import EventQuery, JobQuery
from hodei.testing import FixedClock, InMemoryStore, RecordingPublisher

MADRID = "Europe/Madrid"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _ticks(expression: str, tz: str, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    tick: datetime | None = after
    for _ in range(n):
        tick = cron.next_tick(expression, tz, tick)  # type: ignore[arg-type]
        assert tick is not None
        out.append(tick)
    return out


# -- DST (Europe/Madrid: 2025-03-30 02:00 -> 03:00 CEST, 2025-10-26 03:00 -> 02:00 CET)


def test_spring_forward_a_daily_time_in_the_skipped_hour_fires_once_when_clocks_jump() -> None:
    ticks = _ticks("30 2 * * *", MADRID, utc(2025, 3, 28, 12), 4)
    # 02:30 CET on the 29th, 03:00 CEST (= 01:00 UTC) on the 30th, then 02:30 CEST.
    assert ticks == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 30, 1), utc(2025, 3, 31, 0, 30),
                     utc(2025, 4, 1, 0, 30)]  # fmt: skip


def test_fall_back_a_daily_time_in_the_repeated_hour_fires_once() -> None:
    ticks = _ticks("30 2 * * *", MADRID, utc(2025, 10, 25, 12), 3)
    assert ticks == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30), utc(2025, 10, 28, 1, 30)]


def test_fall_back_a_sub_hourly_schedule_fires_at_every_real_instant() -> None:
    # 02:00 and 02:30 happen twice (CEST, then CET): four fires, 30 real minutes apart.
    ticks = _ticks("*/30 * * * *", MADRID, utc(2025, 10, 25, 23, 45), 5)
    assert ticks == [utc(2025, 10, 26, 0), utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1),
                     utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 2)]  # fmt: skip


def test_spring_forward_a_sub_hourly_schedule_has_no_ticks_in_the_missing_hour() -> None:
    ticks = _ticks("*/30 * * * *", MADRID, utc(2025, 3, 30, 0, 15), 3)
    # 01:30 CET (00:30 UTC), then straight to 03:00 CEST (01:00 UTC).
    assert ticks == [utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 1), utc(2025, 3, 30, 1, 30)]


def test_a_utc_schedule_ignores_dst() -> None:
    assert _ticks("30 2 * * *", "UTC", utc(2025, 3, 29, 12), 2) == [
        utc(2025, 3, 30, 2, 30),
        utc(2025, 3, 31, 2, 30),
    ]


def test_six_fields_put_seconds_first() -> None:
    assert _ticks("*/15 * * * * *", "UTC", utc(2025, 1, 1), 2) == [
        utc(2025, 1, 1, 0, 0, 15),
        utc(2025, 1, 1, 0, 0, 30),
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * * *", "has 4 fields"),
        ("", "give a cron expression"),
        ("* * * * * * *", "has 7 fields"),
        ("*/0 * * * *", "bad cron expression"),
    ],
)
def test_bad_expressions_are_one_line_errors(expression: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        cron.check_expression(expression)
    assert "\n" not in str(caught.value)


# -- the missed-tick policy ------------------------------------------------------------


def test_on_time_ticks_all_fire_and_missed_ones_follow_the_policy() -> None:
    a, b, c = utc(2025, 1, 1, 0, 0), utc(2025, 1, 1, 0, 1), utc(2025, 1, 1, 0, 2)
    assert plan_fires([b, c], 0, None, Catchup.SKIP).fire == ((b, Trigger.CRON), (c, Trigger.CRON))
    skip = plan_fires([], 3, a, Catchup.SKIP)
    assert (skip.fire, skip.skipped) == ((), 3)
    once = plan_fires([], 3, a, Catchup.ONCE)
    assert (once.fire, once.skipped) == (((a, Trigger.CATCHUP),), 2)
    # An on-time tick after a short outage does not swallow the catch-up: both fire.
    both = plan_fires([c], 2, a, Catchup.ONCE)
    assert (both.fire, both.skipped) == (((a, Trigger.CATCHUP), (c, Trigger.CRON)), 1)
    capped = plan_fires([a, b, c], 0, None, Catchup.ONCE, limit=2)
    assert (capped.fire, capped.skipped) == (((b, Trigger.CRON), (c, Trigger.CRON)), 1)


def test_a_long_outage_of_a_per_second_schedule_is_not_walked_tick_by_tick() -> None:
    first = utc(2025, 1, 1)
    now = first + timedelta(days=30)
    due = cron.due_ticks("* * * * * *", "UTC", first, now, timedelta(seconds=60))
    assert not due.counted_all and due.missed == cron.MAX_COUNTED
    assert due.newest_missed == now - timedelta(seconds=61)
    assert len(due.on_time) == 61 and due.on_time[-1] == now
    assert due.next_after == now + timedelta(seconds=1)


# -- use cases on the in-memory store ------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(utc(2026, 1, 1, 12, 0, 0))


@pytest.fixture
def store(clock: FixedClock) -> InMemoryStore:
    store = InMemoryStore()
    now = clock.now()
    with store.transaction() as tx:
        tx.providers.add(Provider(uuid.uuid4(), "local", "local", now, now, max_workers=2))
    return store


def _add(store: InMemoryStore, clock: FixedClock, **kwargs: object) -> None:
    values: dict[str, object] = {"name": "nightly", "cron_expression": "0 * * * *"}
    values.update(kwargs)
    create_schedule(
        store,
        clock,
        spec=JobSpec.create("true", name="nightly"),
        actor="cli:ana",
        **values,  # type: ignore[arg-type]
    )


def _events(store: InMemoryStore, name: str) -> list[tuple[str, str]]:
    with store.reading() as tx:
        found = tx.events.search(EventQuery(correlation_id=name, limit=1000))
    return [(e.event_type, e.actor) for e in found if e.aggregate_type == "schedule"]


def test_each_tick_is_a_job_with_the_schedule_as_correlation_id(
    store: InMemoryStore, clock: FixedClock
) -> None:
    _add(store, clock)
    publisher = RecordingPublisher()
    clock.advance(3600)  # 13:00, the first tick
    report = fire_due(store, clock, publisher)
    assert [(n, t) for n, t, _ in report.fired] == [("nightly", utc(2026, 1, 1, 13))]
    view = get_schedule(store, "nightly")
    assert view.schedule.next_fire_at == utc(2026, 1, 1, 14)
    (fire,) = view.fires
    with store.reading() as tx:
        job = tx.jobs.get(fire.job_id)  # type: ignore[arg-type]
    assert job is not None and job.correlation_id == "nightly"
    assert job.spec.env["HODEI_SCHEDULED_AT"] == "2026-01-01T13:00:00+00:00"
    assert job.submitted_by == "system:scheduler"
    assert _events(store, "nightly") == [
        (EventType.SCHEDULE_CREATED, "cli:ana"),
        (EventType.SCHEDULE_FIRED, "system:scheduler"),
    ]
    # Nothing due until the next tick.
    assert fire_due(store, clock, publisher).fired == []


def test_a_tick_fired_twice_makes_one_job_and_one_fired_event(
    store: InMemoryStore, clock: FixedClock
) -> None:
    _add(store, clock)
    clock.advance(3600)
    with store.reading() as tx:
        stale = tx.schedules.get_by_name("nightly")
    first = fire_due(store, clock, RecordingPublisher())
    # A second scheduler that read the schedule before the first moved it on.
    with store.transaction() as tx:
        assert stale is not None
        tx.schedules.update(stale.id, next_fire_at=stale.next_fire_at)
    second = fire_due(store, clock, RecordingPublisher())
    assert [j for *_, j in first.fired] == [j for *_, j in second.fired]
    with store.reading() as tx:
        assert len(tx.jobs.search(JobQuery())) == 1
    kinds = [k for k, _ in _events(store, "nightly")]
    assert kinds.count(EventType.SCHEDULE_FIRED) == 1


@pytest.mark.parametrize(("policy", "jobs"), [("skip", 0), ("once", 1)])
def test_missed_ticks_follow_the_catchup_policy(
    store: InMemoryStore, clock: FixedClock, policy: str, jobs: int
) -> None:
    _add(store, clock, catchup=policy)
    clock.advance(5 * 3600 + 600)  # 17:10: ticks 13:00..17:00 all older than the grace
    report = fire_due(store, clock, RecordingPublisher())
    assert len(report.fired) == jobs
    if jobs:
        assert report.fired[0][1] == utc(2026, 1, 1, 17)
    assert report.skipped == {"nightly": 5 - jobs}
    assert get_schedule(store, "nightly").schedule.next_fire_at == utc(2026, 1, 1, 18)
    assert EventType.SCHEDULE_SKIPPED in [k for k, _ in _events(store, "nightly")]


def test_pause_resume_remove_and_trigger(store: InMemoryStore, clock: FixedClock) -> None:
    _add(store, clock)
    pause_schedule(store, clock, "nightly", actor="api:ops")
    with pytest.raises(Conflict):
        pause_schedule(store, clock, "nightly", actor="api:ops")
    clock.advance(7200)
    assert fire_due(store, clock, RecordingPublisher()).fired == []
    job = trigger_schedule(store, clock, RecordingPublisher(), "nightly", actor="api:ops")
    assert job.correlation_id == "nightly" and job.submitted_by == "api:ops"
    resumed = resume_schedule(store, clock, "nightly", actor="api:ops")
    assert resumed.next_fire_at == utc(2026, 1, 1, 15)  # not the ticks while paused
    remove_schedule(store, clock, "nightly", actor="api:ops")
    with pytest.raises(ScheduleNotFound):
        get_schedule(store, "nightly")
    assert [k for k, _ in _events(store, "nightly")] == [
        EventType.SCHEDULE_CREATED,
        EventType.SCHEDULE_PAUSED,
        EventType.SCHEDULE_FIRED,
        EventType.SCHEDULE_RESUMED,
        EventType.SCHEDULE_REMOVED,
    ]
    assert {a for _, a in _events(store, "nightly")} == {"cli:ana", "api:ops"}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "bad name"}, InvalidInput, "schedule name"),
        ({"timezone": "Mars/Base"}, InvalidInput, "unknown time zone"),
        ({"catchup": "always"}, InvalidInput, "catch-up policy"),
        ({"cron_expression": "0 0 30 2 *"}, InvalidInput, "bad cron expression"),
    ],
)
def test_bad_input_stores_nothing(
    store: InMemoryStore, clock: FixedClock, kwargs: dict[str, object], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _add(store, clock, **kwargs)
    with store.reading() as tx:
        assert tx.schedules.search() == []


def test_a_taken_name_is_a_conflict(store: InMemoryStore, clock: FixedClock) -> None:
    _add(store, clock)
    with pytest.raises(Conflict, match="exists already"):
        _add(store, clock)


def test_secret_env_and_own_keys_are_refused(store: InMemoryStore, clock: FixedClock) -> None:
    for spec in (
        JobSpec.create("true", secret_env={"TOKEN": "s3cret"}),
        JobSpec.create("true", idempotency_key="k"),
        JobSpec.create("true", correlation_id="other"),
    ):
        with pytest.raises(InvalidInput) as caught:
            create_schedule(
                store, clock, name="x", cron_expression="* * * * *", spec=spec, actor="cli:a"
            )
        assert "s3cret" not in str(caught.value)
