"""The operators' view on a large history: timeline, list, status, events and doctor at
10k, 100k and 1M jobs.

For each size it creates a scratch PostgreSQL database, migrates it, loads a history
with COPY (psycopg 3), then measures the median of each operation through
``hodei.Client`` in this process, and drops the database.

The history: N jobs spread evenly over 30 days (the default retention) ending now,
each with 4 events of its own, one attempt and 20 log lines; one worker per 6 jobs
with its bootstrap token and 6 events (TokenIssued, WorkerProvisioning, TokenConsumed,
WorkerRegistered, WorkerReady, WorkerTerminated): 5 events per job on average. 90%
SUCCEEDED, 8% FAILED, 1% TIMED_OUT, 1% CANCELLED; workflows of 10 jobs share a
correlation id. On top, the current load, the same at every size so that the sizes
differ only in history: ``--active`` (default 100) jobs each PENDING, QUEUED and
RUNNING (each RUNNING one on its own BUSY worker), 2 idle workers per provider, three
providers.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--repeat 30]
        [--json] [--explain FILE]
    .venv/bin/python benchmarks/scale.py --write-cost 4000

``--json`` prints one object per size: jobs, timeline_ms, list_ms, status_ms,
events_ms, doctor_ms (medians). ``--explain FILE`` writes EXPLAIN (ANALYZE, BUFFERS)
of every query each operation ran, at the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common
import scale_data

from hodei.bootstrap import Container
from hodei.sdk import Client
from hodei.settings import Settings

JSON_KEYS = ("jobs", "timeline_ms", "list_ms", "status_ms", "events_ms", "doctor_ms")
DOCTOR_REPEAT = 5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="comma-separated job counts (default: 10000,100000,1000000)",
    )
    parser.add_argument("--repeat", type=int, default=30, help="runs per measurement")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    parser.add_argument("--explain", type=Path, help="write EXPLAIN ANALYZE at the largest size")
    parser.add_argument(
        "--active",
        type=int,
        default=100,
        help="jobs each PENDING, QUEUED and RUNNING now, the same at every size (default 100)",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--write-cost",
        type=int,
        metavar="N",
        help="instead: time N job state changes with and without the state_counts trigger",
    )
    args = parser.parse_args(argv)
    args.size_list = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    return args


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Measured:
    jobs: int
    runs: dict[str, list[float]] = field(default_factory=dict)
    load_s: float = 0.0
    findings: int = 0

    def medians(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jobs": self.jobs}
        for name, values in self.runs.items():
            out[f"{name}_ms"] = round(statistics.median(values), 2)
        return out


def timed(fn: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def measure(client: Client, history: scale_data.History, repeat: int) -> Measured:
    rng = random.Random(1)
    sample = rng.sample(history.terminal_job_ids, min(repeat + 2, len(history.terminal_job_ids)))
    picks: Iterator[uuid.UUID] = iter(sample)
    since = history.end - timedelta(minutes=1)
    result = Measured(history.jobs)
    result.runs["timeline"] = timed(lambda: client.timeline(next(picks)), repeat)
    result.runs["list"] = timed(lambda: client.list(state="FAILED", limit=50), repeat)
    result.runs["status"] = timed(client.status, repeat)
    result.runs["events"] = timed(lambda: client.events(since=since, limit=100), repeat)
    result.runs["doctor"] = timed(client.doctor, DOCTOR_REPEAT, warmup=1)
    result.findings = len(client.doctor().findings)
    return result


def explain(client: Client, history: scale_data.History) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement each operation runs."""
    job_id = history.terminal_job_ids[len(history.terminal_job_ids) // 2]
    since = history.end - timedelta(minutes=1)
    operations: list[tuple[str, Callable[[], object]]] = [
        ("timeline", lambda: client.timeline(job_id)),
        ("job list --state FAILED", lambda: client.list(state="FAILED", limit=50)),
        ("status", client.status),
        ("events list --since 1m", lambda: client.events(since=since, limit=100)),
        ("doctor", client.doctor),
    ]
    engine = client.container.engine
    sections = []
    for title, operation in operations:
        statements = _captured(engine, operation)
        sections.append(f"### {title}\n")
        with engine.connect() as conn:
            for statement, parameters in statements:
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                ).scalars()
                sections.append("```sql\n" + statement.strip() + "\n```\n```\n")
                sections.append("\n".join(plan) + "\n```\n")
            conn.rollback()
    return "\n".join(sections)


def _captured(engine: sa.Engine, operation: Callable[[], object]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        operation()
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    return seen


def run_size(n: int, args: argparse.Namespace, explain_to: Path | None) -> Measured:
    with common.scratch_database(None) as url, tempfile.TemporaryDirectory() as home:
        log(f"{n} jobs: loading into {sa.engine.make_url(url).database}")
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            history = scale_data.load(conn, n, seed=args.seed, active=args.active, log=log)
        load_s = time.monotonic() - started
        log(f"{n} jobs: loaded in {load_s:.0f}s; measuring")
        client = Client(Container(Settings(home=Path(home), database_url=url)))
        try:
            scale_data.refresh_live(client.container.engine)
            result = measure(client, history, args.repeat)
            if explain_to is not None:
                explain_to.write_text(explain(client, history))
                log(f"EXPLAIN written to {explain_to}")
        finally:
            client.close()
        result.load_s = load_s
        if result.findings:
            log(f"warning: doctor found {result.findings} problem(s) in the generated data")
        return result


def write_cost(transactions: int) -> dict[str, float]:
    """What the state_counts trigger adds to hodei's write path: the median time of one
    job state change (conditional UPDATE plus its event, one transaction), with the
    trigger and without, in alternating blocks so drift hits both alike."""
    from hodei.domain.event_builders import job_event
    from hodei.domain.events import EventType
    from hodei.domain.states import JobState
    from hodei.store.engine import create_engine
    from hodei.store.sql_store import SqlStore

    with common.scratch_database(None) as url:
        store = SqlStore(create_engine(url))
        client = Client(Container(Settings(home=Path(tempfile.mkdtemp()), database_url=url)))
        job = client.submit("true", labels={"nowhere": "true"})  # stays PENDING: no provider
        states = [JobState.PENDING, JobState.QUEUED]
        runs: dict[str, list[float]] = {"with_tally_ms": [], "without_tally_ms": []}
        for block in range(20):
            name = "with_tally_ms" if block % 2 == 0 else "without_tally_ms"
            mode = "ENABLE" if block % 2 == 0 else "DISABLE"
            with store.engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE jobs {mode} TRIGGER jobs_count_changed")
            for i in range(transactions // 20):
                old, new = states[i % 2], states[(i + 1) % 2]
                start = time.perf_counter()
                with store.transaction() as tx:
                    tx.jobs.compare_and_set(job.id, states=[old], state=new)
                    tx.events.add(
                        job_event(
                            job,
                            EventType.JOB_QUEUED,
                            actor="bench",
                            now=job.created_at,
                            new_state=new,
                            old_state=old,
                        )
                    )
                runs[name].append((time.perf_counter() - start) * 1000)
        client.close()
        store.engine.dispose()
    return {k: round(statistics.median(v), 3) for k, v in runs.items()}


def render(results: list[Measured]) -> str:
    head = "| jobs | timeline | job list FAILED | status | events --since 1m | doctor |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        m = r.medians()
        lines.append(
            f"| {r.jobs:,} | {m['timeline_ms']} ms | {m['list_ms']} ms | {m['status_ms']} ms "
            f"| {m['events_ms']} ms | {m['doctor_ms']} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.write_cost:
        print(json.dumps(write_cost(args.write_cost)))
        return 0
    results = []
    with common.exit_on_signals():
        for n in args.size_list:
            largest = n == max(args.size_list)
            result = run_size(n, args, args.explain if largest else None)
            results.append(result)
            if args.json:
                print(json.dumps({k: result.medians()[k] for k in JSON_KEYS}), flush=True)
            else:
                log(f"{n} jobs: {json.dumps(result.medians())} (load {result.load_s:.0f}s)")
    if not args.json:
        print(render(results))
        print(f"\nreproduce: {common.command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
