"""Cron schedules on SQLite and PostgreSQL: the (schedule, tick) key makes a fire once,
the SDK's calls and the CLI's one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hodei import Client
from hodei.domain.events import EventType
from hodei.errors import Conflict, InvalidInput, ProviderNotFound, ScheduleNotFound
from hodei.services.jobs.schedules import fire_due
from hodei.services.operators.doctor import DoctorOptions
from hodei.services.ports.publisher import Publication
from hodei.services.ports.store import EventQuery, Fire
from hodei.settings import Settings
from hodei.testing import FixedClock
from tests.support import fast_settings, hodei_env, run_cli, terminate, wait_for

NOWHERE = {"cron-test": "nowhere"}


def test_a_tick_is_recorded_once_in_the_database(client: Client) -> None:
    schedule = client.add_schedule("once", "0 0 * * *", "true", labels=NOWHERE)
    tick = datetime(2030, 1, 1, tzinfo=UTC)
    store = client.container.store
    for expected in (True, False):
        with store.transaction() as tx:
            fire = Fire(schedule.id, tick, None, "cron", tick)
            assert tx.schedules.record_fire(fire) is expected
    assert [f.fire_time for f in client.schedule("once").fires] == [tick]


def test_the_sdk_adds_triggers_pauses_and_removes(client: Client) -> None:
    added = client.add_schedule(
        "report", "30 2 * * *", ["echo", "hi"], timezone="Europe/Madrid", labels=NOWHERE
    )
    assert added.timezone == "Europe/Madrid" and added.spec["name"] == "report"
    job = client.trigger_schedule("report")
    assert job.correlation_id == "report" and job.name == "report"
    assert client.pause_schedule("report").paused
    assert not client.resume_schedule("report").paused
    assert [s.name for s in client.schedules()] == ["report"]
    kinds = [e.event_type for e in client.timeline(correlation_id="report")]
    assert kinds[0] == "ScheduleCreated" and "ScheduleFired" in kinds
    client.remove_schedule("report")
    assert client.schedules() == []


def test_a_schedule_naming_an_unknown_provider_is_refused(client: Client) -> None:
    with pytest.raises(ProviderNotFound, match="no provider named 'nonexist'"):
        client.add_schedule("ghost", "*/5 * * * * *", "true", provider="nonexist")
    assert client.schedules() == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"run_at": datetime(2030, 1, 1, tzinfo=UTC)}, "give no run_at"),
        ({"run_at": timedelta(minutes=5)}, "give no run_at"),
        ({"after": [str(uuid.uuid4())]}, "give no after"),
    ],
)
def test_job_timing_options_are_refused_for_a_schedule(
    lifecycle_client: Client, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        lifecycle_client.add_schedule("timed", "0 0 * * *", "true", labels=NOWHERE, **fields)
    assert lifecycle_client.schedules() == []


@pytest.mark.parametrize("paused", ["yes", 1, None])
def test_paused_that_is_not_a_bool_is_one_line(lifecycle_client: Client, paused: object) -> None:
    with pytest.raises(InvalidInput, match="paused is true or false") as caught:
        lifecycle_client.add_schedule("p1", "0 0 1 1 *", "true", paused=paused)
    assert "\n" not in str(caught.value) and "SELECT" not in str(caught.value).upper()
    assert lifecycle_client.schedules() == []


def test_provider_remove_is_refused_while_a_schedule_names_it(client: Client) -> None:
    client.add_provider("p1", "local", max_workers=0)
    client.add_schedule("nightly-p1", "0 3 * * *", "true", provider="p1")
    with pytest.raises(Conflict, match=r"named by 1 schedule\(s\): nightly-p1"):
        client.remove_provider("p1")
    assert [v.provider.name for v in client.providers()].count("p1") == 1
    client.remove_provider("p1", force=True)
    (found,) = [f for f in client.doctor().findings if f.check == "schedule_provider_missing"]
    assert found.ids["schedule"] == "nightly-p1" and "schedule remove nightly-p1" in (
        found.suggestion
    )


def test_doctor_caps_the_schedules_naming_a_missing_provider(client: Client) -> None:
    client.add_provider("p1", "local", max_workers=0)
    for n in range(3):
        client.add_schedule(f"nightly-{n}", "0 3 * * *", "true", provider="p1")
    client.remove_provider("p1", force=True)
    findings = client.doctor(options=DoctorOptions(limit=2)).findings
    assert [f.check for f in findings if "schedule" in f.ids] == ["schedule_provider_missing"] * 2


def test_a_schedule_that_cannot_fire_does_not_stop_the_others(client: Client) -> None:
    """Its provider removed with --force: its ticks fail (one ScheduleFailed per reason,
    not one per pass), the healthy schedule's ticks fire on time."""
    client.add_provider("p1", "local", max_workers=0)
    bad = client.add_schedule("bad", "* * * * * *", "true", provider="p1")
    client.add_schedule("good", "* * * * * *", "true", labels=NOWHERE)
    client.remove_provider("p1", force=True)
    c = client.container
    clock = FixedClock(bad.next_fire_at)
    for _ in range(3):
        report = fire_due(c.store, clock, c.publisher)
        assert [name for name, *_ in report.fired] == ["good"]
        assert "no provider named 'p1'" in report.failed["bad"]
        clock.advance(1)
    with c.store.reading() as tx:
        events = tx.events.search(EventQuery(correlation_id="bad", limit=100))
    failed = [e for e in events if e.event_type == EventType.SCHEDULE_FAILED]
    assert len(failed) == 1 and "no provider named 'p1'" in failed[0].payload["reason"]
    assert client.schedule("bad").schedule.next_fire_at == clock.now()  # not stuck behind
    assert len(client.schedule("good").fires) == 3
    findings = {f.check: f for f in client.doctor().findings if "schedule" in f.ids}
    assert findings["schedule_provider_missing"].ids["schedule"] == "bad"


def test_doctor_names_a_schedule_whose_newest_event_is_a_failure(client: Client) -> None:
    """A stored job spec this hodei cannot read (an older hodei's, say): ScheduleFailed
    on its timeline and a doctor finding until a tick fires again."""
    odd = client.add_schedule("odd", "* * * * * *", "true", labels=NOWHERE)
    c = client.container
    with c.store.transaction() as tx:
        tx.schedules.update(odd.id, spec={**odd.spec, "timeout_s": "soon"})
    clock = FixedClock(odd.next_fire_at)
    assert "odd" in fire_due(c.store, clock, c.publisher).failed
    (found,) = [f for f in client.doctor().findings if f.check == "schedule_failing"]
    assert found.ids["schedule"] == "odd" and "timeout" in found.message
    with c.store.transaction() as tx:
        tx.schedules.update(odd.id, spec=odd.spec)
    clock.advance(1)
    assert [n for n, *_ in fire_due(c.store, clock, c.publisher).fired] == ["odd"]
    assert not [f for f in client.doctor().findings if f.check == "schedule_failing"]


@pytest.mark.parametrize(("policy", "catchup", "skipped"), [("once", 1, 1), ("skip", 0, 2)])
def test_catchup_once_fires_the_newest_missed_tick_after_a_short_outage(
    client: Client, policy: str, catchup: int, skipped: int
) -> None:
    """No scheduler for 100 s with a tick every 20 s: the ticks of the last 60 s fire on
    time; of the two older ones, ``once`` fires the newer as a catch-up."""
    added = client.add_schedule("every20", "*/20 * * * * *", "true", labels=NOWHERE, catchup=policy)
    first = added.next_fire_at
    assert first is not None
    c = client.container
    report = fire_due(c.store, FixedClock(first + timedelta(seconds=100)), c.publisher)
    fired = [tick for _, tick, _ in report.fired]
    on_time = [first + timedelta(seconds=s) for s in (40, 60, 80, 100)]
    assert fired == [first + timedelta(seconds=20)] * catchup + on_time
    assert report.skipped == {"every20": skipped}
    triggers = [f.trigger for f in client.schedule("every20").fires]
    assert triggers.count("catchup") == catchup


class _RemovesProviderAfterFirstPublish:
    """The real publisher; once its first publish is done, the provider is removed
    (``--force``), so the next tick of the same pass cannot be submitted."""

    def __init__(self, client: Client, provider: str) -> None:
        self._client, self._provider, self._done = client, provider, False
        self._inner = client.container.publisher

    def publish(self, publication: Publication) -> str:
        return self._inner.publish(publication)

    def publish_many(
        self, publications: Sequence[Publication]
    ) -> Iterator[tuple[Publication, str]]:
        yield from self._inner.publish_many(publications)
        if not self._done:
            self._done = True
            self._client.remove_provider(self._provider, force=True)


def test_a_failure_after_a_fire_in_the_same_pass_keeps_the_fired_tick(client: Client) -> None:
    """``--catchup once`` fires the catch-up tick, then the next tick fails: the fired
    one stays the schedule's last fire and is not counted as missed."""
    client.add_provider("p1", "local")
    added = client.add_schedule("every20", "*/20 * * * * *", "true", provider="p1")
    first = added.next_fire_at
    assert first is not None
    c = client.container
    publisher = _RemovesProviderAfterFirstPublish(client, "p1")
    report = fire_due(c.store, FixedClock(first + timedelta(seconds=100)), publisher)
    ((_, tick, job_id),) = report.fired
    assert (
        tick == first + timedelta(seconds=20)
        and "no provider named 'p1'" in report.failed["every20"]
    )
    schedule = client.schedule("every20").schedule
    assert (schedule.last_fire_at, str(schedule.last_job_id)) == (tick, job_id)
    assert schedule.next_fire_at == first + timedelta(seconds=120)
    with c.store.reading() as tx:
        events = tx.events.search(EventQuery(correlation_id="every20", limit=100))
    (failed,) = [e for e in events if e.event_type == EventType.SCHEDULE_FAILED]
    assert failed.payload["missed"] == 5  # six due ticks, one fired


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_running_scheduler_fires_the_healthy_schedule_beside_a_broken_one(
    pg_client: Client, tmp_path: Path
) -> None:
    """The reported case with a real ``hodei scheduler``: before, its cron pass failed
    every second on the schedule whose provider was removed and nothing fired."""
    client = pg_client
    client.add_provider("p1", "local", max_workers=0)
    client.add_schedule("bad", "* * * * * *", "true", provider="p1")
    client.add_schedule("good", "*/2 * * * * *", "true", labels=NOWHERE)
    client.remove_provider("p1", force=True)
    home = tmp_path / "scheduler"
    home.mkdir()
    log_path = tmp_path / "scheduler.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hodei", "scheduler"],
            env=hodei_env(client.settings, HODEI_HOME=str(home), HODEI_LOG_FORMAT="text"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: len(client.schedule("good").fires) >= 3,
                timeout=60,
                message="the healthy schedule fires",
            )
        finally:
            terminate(proc, timeout=30)
    text = log_path.read_text(errors="replace")
    assert "cron pass failed" not in text, text[-2000:]
    assert text.count("schedule bad cannot fire") == 1, text[-2000:]
    kinds = [e.event_type for e in client.timeline(correlation_id="bad")]
    assert kinds.count("ScheduleFailed") == 1, kinds


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / ".hodei")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--cron", "61 * * * *"], 2, "bad cron expression '61 * * * *': Bad minute"),
        (["--cron", "* * * *"], 2, "it has 4 fields"),
        (["--cron", "* * * * *", "--timezone", "Mars/Base"], 2, "unknown time zone"),
        (["--cron", "* * * * *", "--catchup", "always"], 2, "always"),
        (["--cron", "* * * * *", "--secret-env", "A=b"], 2, "cannot carry secret_env"),
        (["--cron", "* * * * *", "--provider", "nonexist"], 3, "no provider named 'nonexist'"),
        (["--cron", "* * * * *", "--in", "5m"], 2, "give no run_at (--in, --at)"),
        (["--cron", "* * * * *", "--at", "2030-01-02T09:00Z"], 2, "give no run_at (--in, --at)"),
        (
            ["--cron", "* * * * *", "--after", str(uuid.uuid4())],
            2,
            "give no after (--after, --after-any)",
        ),
        # Refused by the job's own check first, as `job submit --after-any` is.
        (["--cron", "* * * * *", "--after-any"], 2, "after_any needs after"),
    ],
)
def test_cli_bad_input_is_one_line_with_its_exit_code(
    settings: Settings, args: list[str], code: int, message: str
) -> None:
    done = run_cli(settings, "schedule", "add", "x", *args, "--", "true")
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_schedule_commands(settings: Settings) -> None:
    add = ["schedule", "add", "tick", "--cron", "*/5 * * * *", "-l", "cron-test=nowhere"]
    assert run_cli(settings, *add, "--", "echo hi").returncode == 0
    again = run_cli(settings, *add, "--", "echo hi")
    assert again.returncode == 4 and "exists already" in again.stderr
    shown = json.loads(run_cli(settings, "schedule", "show", "tick", "-o", "json").stdout)
    assert (shown["cron"], shown["catchup"], shown["fires"]) == ("*/5 * * * *", "once", [])
    job_id = run_cli(settings, "schedule", "trigger", "tick").stdout.strip()
    shown = json.loads(run_cli(settings, "schedule", "show", "tick", "-o", "json").stdout)
    assert [f["job_id"] for f in shown["fires"]] == [job_id]
    assert run_cli(settings, "schedule", "pause", "tick").returncode == 0
    paused_again = run_cli(settings, "schedule", "pause", "tick")
    assert paused_again.returncode == 4 and "paused already" in paused_again.stderr
    assert "paused" in run_cli(settings, "schedule", "list").stdout
    assert run_cli(settings, "schedule", "resume", "tick").returncode == 0
    assert run_cli(settings, "schedule", "remove", "tick").returncode == 0
    gone = run_cli(settings, "schedule", "show", "tick")
    assert gone.returncode == 3 and "no schedule named 'tick'" in gone.stderr


@pytest.mark.postgres
@pytest.mark.redis
def test_the_http_client_does_the_same_and_hides_env_values_from_others(
    api_server: Any,
) -> None:
    submitter, viewer = api_server.client("submitter"), api_server.client("viewer")
    added = submitter.add_schedule(
        "remote", "*/5 * * * *", "true", env={"KEY": "v"}, labels=NOWHERE, catchup="skip"
    )
    assert (added.catchup, added.created_by) == ("skip", "api:test-submitter")
    with pytest.raises(ProviderNotFound, match="no provider named 'nonexist'"):
        submitter.add_schedule("ghost", "*/5 * * * *", "true", provider="nonexist")
    assert submitter.schedule("remote").schedule.spec["env"] == {"KEY": "v"}
    assert viewer.schedule("remote").schedule.spec["env"] == {"KEY": "***"}
    job = submitter.trigger_schedule("remote")
    assert job.correlation_id == "remote" and job.submitted_by == "api:test-submitter"
    assert [f.job_id for f in viewer.schedule("remote").fires] == [job.id]
    assert submitter.pause_schedule("remote").paused
    assert not submitter.resume_schedule("remote").paused
    assert [s.name for s in viewer.schedules()] == ["remote"]
    submitter.remove_schedule("remote")
    with pytest.raises(ScheduleNotFound):
        viewer.schedule("remote")
    submitter.close()
    viewer.close()
