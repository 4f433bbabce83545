"""`hodei serve` /metrics after a known set of real jobs, and across a restart of serve."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hodei import JobState
from hodei.domain.states import WorkerState
from hodei.observability.queries import JOB_DURATION_BUCKETS
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import alive, hodei_env, kill_tree, pid_of, terminate, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Numbers about this process, not about the system: they may differ between scrapes.
PROCESS_LOCAL = ("hodei_scrape_duration_seconds", "hodei_db_pool", "hodei_db_server_connections")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    """(status, body) of a GET, including 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def serving(settings: Settings, **env: str) -> Iterator[str]:
    """Run `hodei serve` as a subprocess; yields its base URL once it answers."""
    # Its log goes to a file: a pipe nobody reads would block it once full.
    with tempfile.TemporaryFile(mode="w+") as log:
        yield from _serve(settings, env, log)


def _serve(settings: Settings, env: dict[str, str], log: IO[str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hodei", "serve", "--port", str(port)],
        env=hodei_env(settings, **env),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        cwd=settings.home.parent,
    )
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read()[-4000:]

    def up() -> bool:
        assert process.poll() is None, f"hodei serve exited: {output()}"
        try:
            return http_get(base + "/health/live", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, message="hodei serve to answer")
        yield base
    finally:
        terminate(process)
        assert process.returncode == 0, output()


def scrape(base: str) -> Samples:
    status, text = http_get(base + "/metrics")
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _seconds(start: datetime | None, end: datetime | None) -> float:
    assert start is not None and end is not None
    return (end - start).total_seconds()


def _reap_one_worker(client: Client) -> None:
    """SIGKILL one idle worker and let the reaper declare it lost (a WorkerLost event)."""
    with client.container.store.transaction() as tx:
        workers = tx.workers.search(states=[WorkerState.READY], limit=10)
    victim = workers[0]
    pid = pid_of(victim.infra_ref)
    assert pid is not None
    kill_tree(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), message="the killed worker to die")

    def lost() -> bool:
        TASKS["reap_stale_workers"](client.container)
        with client.container.store.transaction() as tx:
            found = tx.workers.get(victim.id)
        return found is not None and found.state is WorkerState.LOST

    wait_for(lost, timeout=30, interval=0.5, message="the reaper to mark the worker LOST")


def _all_workers_ended(client: Client) -> bool:
    with client.container.store.transaction() as tx:
        return all(not w.state.is_live for w in tx.workers.search(limit=1000))


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_metrics_count_real_jobs_and_survive_a_restart(
    pg_client: Client, pg_settings: Settings
) -> None:
    client = pg_client
    finished = [
        client.submit("true", name="quick"),
        client.submit("echo two", name="echo"),
        client.submit("sleep 3", name="slow"),
        client.submit("exit 3", name="broken"),
    ]
    client.submit("true", name="no-gpu-anywhere", labels={"gpu": "a100"})
    jobs = [client.wait(job.id, timeout=120) for job in finished]
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 3 + [JobState.FAILED]
    _reap_one_worker(client)
    stop_workers(client)
    wait_for(lambda: _all_workers_ended(client), timeout=30, message="every worker to end")

    with serving(pg_settings) as base:
        first = scrape(base)

    for state, expected in {"SUCCEEDED": 3, "FAILED": 1, "PENDING": 1, "RUNNING": 0}.items():
        assert value(first, "hodei_jobs", state=state) == expected
    assert value(first, "hodei_queue_depth", provider="local") == 0
    assert value(first, "hodei_queue_oldest_age_seconds", provider="local") == 0
    assert value(first, "hodei_provider_selection_failures_total") == 1
    assert value(first, "hodei_workers_reaped_total") == 1
    assert value(first, "hodei_provider_active_workers", provider="local") == 0
    assert value(first, "hodei_database_up") == 1

    # The duration histogram matches the jobs' own start and finish times, bucket by bucket.
    durations = [_seconds(j.started_at, j.finished_at) for j in jobs if j.state == "SUCCEEDED"]
    labels = {"provider": "local", "state": "SUCCEEDED"}
    for bound in JOB_DURATION_BUCKETS:
        le = repr(float(bound))
        expected = sum(1 for d in durations if d <= bound)
        assert value(first, "hodei_job_duration_seconds_bucket", le=le, **labels) == expected
    assert value(first, "hodei_job_duration_seconds_bucket", le="2.5", **labels) <= 2  # sleep 3
    assert value(first, "hodei_job_duration_seconds_count", **labels) == 3
    assert value(first, "hodei_job_duration_seconds_sum", **labels) == pytest.approx(
        sum(durations), abs=0.01
    )
    assert value(first, "hodei_job_duration_seconds_count", provider="local", state="FAILED") == 1

    # Workers by state, and provisioning latency of every worker that registered.
    with client.container.store.transaction() as tx:
        workers = tx.workers.search(limit=1000)
        provider = tx.providers.get_by_name("local")
    assert provider is not None
    for state in WorkerState:
        expected = sum(1 for w in workers if w.state is state)
        assert value(first, "hodei_workers", provider="local", state=state.value) == expected
    assert value(first, "hodei_workers", provider="local", state="LOST") == 1
    registered = [w for w in workers if w.registered_at is not None]
    assert value(first, "hodei_worker_provisioning_seconds_count", provider="local") == len(
        registered
    )
    assert value(first, "hodei_provider_max_workers", provider="local") == provider.max_workers
    health = provider.health.value.lower()
    assert value(first, "hodei_provider_health_status", provider="local", status=health) == 1

    # A new `hodei serve` process shows exactly the same numbers.
    with serving(pg_settings) as base:
        second = scrape(base)
    assert _system_wide(second) == _system_wide(first)


def _system_wide(samples: Samples) -> dict[Any, float]:
    return {k: v for k, v in samples.items() if not k[0].startswith(PROCESS_LOCAL)}


def test_metrics_on_the_embedded_default(embedded_client: Client) -> None:
    """The same SQL on SQLite (julianday arithmetic instead of intervals)."""
    from prometheus_client import generate_latest

    from hodei.observability.metrics import build_registry

    job = embedded_client.wait(embedded_client.submit("sleep 1", name="embedded").id, timeout=60)
    assert job.state is JobState.SUCCEEDED
    samples: Samples = {}
    text = generate_latest(build_registry(embedded_client.container.engine)).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    labels = {"provider": "local", "state": "SUCCEEDED"}
    duration = _seconds(job.started_at, job.finished_at)
    assert value(samples, "hodei_jobs", state="SUCCEEDED") == 1
    assert value(samples, "hodei_job_duration_seconds_bucket", le="0.5", **labels) == 0
    assert value(samples, "hodei_job_duration_seconds_bucket", le="5.0", **labels) == (
        1 if duration <= 5 else 0
    )
    assert value(samples, "hodei_job_duration_seconds_sum", **labels) == pytest.approx(
        duration, abs=0.01
    )
    assert value(samples, "hodei_worker_provisioning_seconds_count", provider="local") == 1
