"""Gates at scale (issue 21): jobs held by concurrency keys and a dependency chain.

One run on PostgreSQL + Redis, a scratch database, a real ``hodei scheduler`` and local
workers (``--workers``, kept warm). Two phases, measured in the same run:

- ``plain``: ``--jobs`` ungated jobs (``true``): the baseline.
- ``gated``: the same number of jobs, ``--keys`` concurrency keys of one slot each
  (the jobs spread over them round robin) plus one chain of ``--depth`` jobs, each
  ``--after`` the one before.

Reported per phase: wall time, the scheduler's CPU (its own process, not the workers
it launched) per job, and for ``gated`` the time from a slot freeing (a job of the key,
or the chain's previous job, ``finished_at``) to the next job of it starting
(``started_at``), p50/p95. Ratios are gated / plain.

    .venv/bin/python benchmarks/scheduling.py [--jobs 10000] [--keys 1000] [--depth 50]
        [--workers 4] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    jobs: int
    wall_s: float
    scheduler_cpu_s: float
    to_release_ms: list[float]
    to_start_ms: list[float]

    @property
    def cpu_per_job_ms(self) -> float:
        return 1000 * self.scheduler_cpu_s / max(self.jobs, 1)

    def row(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "jobs": self.jobs,
            "wall_s": round(self.wall_s, 1),
            "jobs_per_s": round(self.jobs / self.wall_s, 1),
            "scheduler_cpu_ms_per_job": round(self.cpu_per_job_ms, 3),
            "slot_to_release_p50_ms": _pct(self.to_release_ms, 0.5),
            "slot_to_release_p95_ms": _pct(self.to_release_ms, 0.95),
            "slot_to_start_p50_ms": _pct(self.to_start_ms, 0.5),
            "slot_to_start_p95_ms": _pct(self.to_start_ms, 0.95),
        }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 1)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _gated_specs(jobs: int, keys: int, depth: int) -> list[Any]:
    from hodei import JobSpec

    specs = [JobSpec.create("true", name="chain-0")]
    specs += [JobSpec.create("true", name=f"chain-{n}", after=[n - 1]) for n in range(1, depth)]
    specs += [
        JobSpec.create("true", name=f"keyed-{n}", concurrency_key=f"key-{n % keys}")
        for n in range(jobs - depth)
    ]
    return specs


def _gaps(done: list[Any], released: dict[Any, datetime]) -> tuple[list[float], list[float]]:
    """From the finished_at of a key's (or the chain's) job to the next one's release
    (JobReleased), and to its started_at: the ms of each, over every key and the chain."""
    series: dict[str, list[Any]] = defaultdict(list)
    for job in done:
        series[job.concurrency_key or "chain"].append(job)
    to_release, to_start = [], []
    for jobs in series.values():
        jobs.sort(key=lambda j: j.started_at)
        for before, after in itertools.pairwise(jobs):
            freed = before.finished_at
            to_start.append((after.started_at - freed).total_seconds() * 1000)
            if after.id in released:
                to_release.append((released[after.id] - freed).total_seconds() * 1000)
    return to_release, to_start


def _released(client: Any, n: int) -> dict[Any, datetime]:
    from hodei.services.ports.store import EventQuery

    with client.container.store.reading() as tx:
        found = tx.events.search(EventQuery(event_types=["JobReleased"], limit=n + 100))
    return {e.aggregate_id: e.occurred_at for e in found}


def _run_phase(name: str, client: Any, specs: list[Any], scheduler_pid: int) -> Phase:
    from hodei import JobState

    cpu0, t0 = _cpu_s(scheduler_pid), time.monotonic()
    submitted = []
    # Batches of 1000: the chain (its indices are of its batch) is all in the first.
    for start in range(0, len(specs), 1000):
        submitted += client.submit_many(specs[start : start + 1000])
    ids = [j.id for j in submitted]
    while True:
        left = client.list(state=["PENDING", "QUEUED", "RUNNING"], limit=1)
        if not left:
            break
        time.sleep(0.5)
    wall, cpu = time.monotonic() - t0, _cpu_s(scheduler_pid) - cpu0
    done = [client.get(i) for i in ids]
    bad = [j for j in done if j.state is not JobState.SUCCEEDED]
    if bad:
        raise SystemExit(f"{len(bad)} job(s) of {name} did not succeed, e.g. {bad[0].state}")
    to_release, to_start = (
        _gaps(done, _released(client, len(done))) if name == "gated" else ([], [])
    )
    return Phase(name, len(done), wall, cpu, to_release, to_start)


@contextlib.contextmanager
def _claimed_redis(url: str | None) -> Any:
    """``url``, or a Redis database 1..15 claimed in db 0 as the test suite claims them,
    so neither flushes the other's."""
    if url:
        yield url
        return
    import redis

    claims = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for number in range(15, 0, -1):
        if claims.set(f"hodei-test-db:{number}", os.getpid(), nx=True, ex=3600):
            break
    else:
        raise SystemExit("every Redis database 1..15 is claimed; pass --broker-url")
    try:
        yield f"redis://127.0.0.1:6379/{number}"
    finally:
        claims.delete(f"hodei-test-db:{number}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--broker-url", help="default: a Redis database claimed as tests do")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.depth < min(args.jobs, 1000) or args.keys < 1:
        raise SystemExit("need 0 < --depth < --jobs, --depth < 1000 and --keys >= 1")

    from hodei.sdk import Client
    from hodei.settings import Settings

    run_id = uuid.uuid4().hex[:10]
    with (
        _claimed_redis(args.broker_url) as broker_url,
        common.broker_lock(broker_url),
        common.scratch_database(None) as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        args.broker_url = broker_url
        common.flush_redis(broker_url)
        home = Path(tmp) / ".hodei"
        settings = Settings(
            home=home,
            database_url=database_url,
            broker_url=args.broker_url,
            log_level="WARNING",
            worker_idle_timeout_s=600.0,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        env.update(settings.child_environment())
        env[common.MARKER] = run_id
        os.environ[common.MARKER] = run_id  # the local workers this process launches
        procs = common.Processes(Path(tmp))
        try:
            fields = {"log_level": "WARNING", "worker_idle_timeout_s": 600.0}
            with Client.from_env(
                home=home, database_url=database_url, broker_url=args.broker_url, **fields
            ) as client:
                client.update_provider("local", max_workers=args.workers, min_workers=args.workers)
                scheduler = procs.start(
                    "scheduler", [sys.executable, "-m", "hodei", "scheduler"], env
                )
                time.sleep(3)
                from hodei import JobSpec

                plain = _run_phase(
                    "plain",
                    client,
                    [JobSpec.create("true") for _ in range(args.jobs)],
                    scheduler.pid,
                )
                gated = _run_phase(
                    "gated", client, _gated_specs(args.jobs, args.keys, args.depth), scheduler.pid
                )
        finally:
            procs.stop_all()
            common.kill_marked(run_id)
    rows = [plain.row(), gated.row()]
    result = {
        "jobs": args.jobs,
        "keys": args.keys,
        "depth": args.depth,
        "workers": args.workers,
        "phases": rows,
        "ratio_wall": round(gated.wall_s / plain.wall_s, 2),
        "ratio_scheduler_cpu_per_job": round(gated.cpu_per_job_ms / plain.cpu_per_job_ms, 2)
        if plain.cpu_per_job_ms
        else None,
        "at": datetime.now().isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(result))
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    print(
        f"gated/plain: wall x{result['ratio_wall']}, "
        f"scheduler CPU per job x{result['ratio_scheduler_cpu_per_job']}"
    )


if __name__ == "__main__":
    main()
