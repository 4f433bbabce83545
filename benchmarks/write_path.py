"""CPU and wall time of one job's writes, this checkout against a baseline commit.

The use cases a job goes through, called in-process on a real store, with no broker
and no worker process (so what varies between runs is the code, not the machine's
scheduling of a dozen processes): ``submit_jobs`` (the publisher only records),
``confirm_queued`` of its one publication, ``claim_attempt`` and ``finish_attempt``
(exit 0). Each variant (this checkout, and ``--baseline-ref REF`` checked out in a
temporary git worktree) runs in a fresh process with its own code on PYTHONPATH and
its own scratch database; rounds alternate the variants. Reported per backend
(PostgreSQL, SQLite): the median over rounds of the per-job wall and CPU time, and
the ratio new/baseline (above 1: the new code is slower).

    .venv/bin/python benchmarks/write_path.py [--baseline-ref main] [--rounds 5]
        [--n 300] [--backends pg,sqlite] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

# -- inside a probe process (the variant's code on PYTHONPATH) -----------------------


def probe(database_url: str, n: int) -> dict[str, float]:
    import time
    import uuid
    from datetime import UTC, datetime

    from hodei.domain.records import Worker
    from hodei.domain.specs import JobSpec
    from hodei.domain.states import WorkerState
    from hodei.services.jobs.attempts import Outcome, claim_attempt, finish_attempt
    from hodei.services.jobs.dispatch import Confirmation, confirm_queued
    from hodei.services.jobs.submission import submit_jobs
    from hodei.store.engine import create_engine
    from hodei.store.migrate import upgrade
    from hodei.store.sql_store import SqlStore

    class Clock:
        def now(self) -> datetime:
            return datetime.now(UTC)

    class Publisher:  # records nothing: the broker is not what is measured
        def publish(self, publication: Any) -> str:
            return uuid.uuid4().hex

        def publish_many(self, publications: Any) -> Iterator[tuple[Any, str]]:
            for p in publications:
                yield p, self.publish(p)

    engine = create_engine(database_url)
    upgrade(engine)
    store, clock, publisher = SqlStore(engine), Clock(), Publisher()
    from hodei.services.fleet.provider_registry import ProviderSpec, add_provider

    add_provider(
        store,
        clock,
        ProviderSpec(name="bench", provider_type="local", max_workers=1),
        validate=lambda _type, config: config,
        actor="bench",
    )
    now = clock.now()
    worker = Worker(uuid.uuid4(), "w", None, "hodei.bench", WorkerState.READY, now, now)
    with store.transaction() as tx:
        tx.workers.add(worker)
    spec = JobSpec.create(["true"], name="bench", provider="bench")

    def one() -> None:
        [submitted] = submit_jobs(store, clock, publisher, [spec], actor="bench")
        job = submitted.job
        assert job.queue is not None
        confirm_queued(store, clock, [Confirmation(job.id, job.attempt, "t", job.queue, None)])
        claim = claim_attempt(
            store, clock, job_id=job.id, attempt=job.attempt, worker_id=worker.id, task_id="t"
        )
        assert claim.won and claim.job is not None, claim.reason
        finished = finish_attempt(
            store, clock, job=claim.job, worker_id=worker.id, outcome=Outcome(0)
        )
        assert finished is not None

    for _ in range(20):  # warm-up: statement caches, connection pool
        one()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        one()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}


# -- the parent -------------------------------------------------------------------------


def run_probe(tree: Path, database_url: str, n: int) -> dict[str, float]:
    env = {**common.process_env(), "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "probe", database_url, str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"probe failed in {tree}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "pg":
        with common.scratch_database(None) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="hodei-bench-sqlite-") as tmp:
        yield f"sqlite:///{tmp}/hodei.db"


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "probe":
        print(json.dumps(probe(sys.argv[2], int(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="main", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--n", type=int, default=300, help="jobs per probe")
    parser.add_argument("--backends", default="pg,sqlite", help="pg, sqlite or both")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with common.baseline_tree(args.baseline_ref) as base:
        assert base is not None
        trees = {"baseline": base, "new": common.REPO}
        for backend in args.backends.split(","):
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "new": []}
            for r in range(args.rounds):
                order = ["baseline", "new"] if r % 2 == 0 else ["new", "baseline"]
                for variant in order:
                    with database(backend) as url:
                        runs[variant].append(run_probe(trees[variant], url, args.n))
            results[backend] = runs
    summary: dict[str, Any] = {"n": args.n, "rounds": args.rounds, "baseline": args.baseline_ref}
    for backend, runs in results.items():
        for key in ("wall_us", "cpu_us"):
            base_m = common.median([x[key] for x in runs["baseline"]])
            new_m = common.median([x[key] for x in runs["new"]])
            ratios = [n[key] / b[key] for b, n in zip(runs["baseline"], runs["new"], strict=True)]
            summary[f"{backend}_{key}_baseline"] = base_m
            summary[f"{backend}_{key}_new"] = new_m
            summary[f"{backend}_{key}_ratio"] = common.median(ratios)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"one job's writes, median of {args.rounds} rounds of {args.n} jobs")
    print(f"{'backend':8} {'what':8} {'baseline':>10} {'new':>10} {'new/base':>9}")
    for backend in results:
        for key in ("wall_us", "cpu_us"):
            print(
                f"{backend:8} {key:8} {summary[f'{backend}_{key}_baseline']:10.0f} "
                f"{summary[f'{backend}_{key}_new']:10.0f} {summary[f'{backend}_{key}_ratio']:9.3f}"
            )
    print("\nreproduce: " + common.command_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
