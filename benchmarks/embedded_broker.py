"""The embedded default's SQLite broker with thousands of jobs waiting: what a publish
and a take cost, this checkout (priority first, then FIFO, through a partial index)
against a baseline commit (kombu's FIFO ``_get``), measured in the same run.

Each probe is a fresh process with its variant's code on PYTHONPATH and its own broker
file. It publishes N job messages the way hodei does (``send_task`` of ``hodei.run_job``
on one provider queue, priorities 0..9 in turn); runs, on its own connection, the
SELECT of a take (kombu's or this checkout's, as each writes it) 200 times with N
waiting: the part of a take that depends on the depth; then takes messages with
``basic_get``: the first 200 (a take with N waiting, its commit included) and then the
rest (the whole drain). The file keeps delivered rows (kombu marks them invisible and
never deletes them), so a second pass of N publishes and takes on the same file
measures a broker that has delivered N before. Variant "new-noindex" is this checkout
with its index dropped: ordering by priority without it. Rounds alternate the
variants; the table gives medians in microseconds per message and the ratio to the
baseline.

    .venv/bin/python benchmarks/embedded_broker.py [--baseline-ref main] [--rounds 3]
        [--depths 1000,5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

QUEUE = "hodei.bench"
FIRST = 200  # takes timed with the queue (nearly) full

# -- inside a probe process (the variant's code on PYTHONPATH) -----------------------


# The SELECT of a take, as kombu's _get (baseline) and this checkout's write it.
FIFO_SELECT = (
    "SELECT * FROM kombu_message WHERE queue_id = ? AND visible != 0 ORDER BY timestamp, id LIMIT 1"
)
PRIORITY_SELECT = (
    "SELECT * FROM kombu_message WHERE queue_id = ? AND visible = 1"
    " ORDER BY json_extract(payload, '$.properties.priority') DESC, id LIMIT 1"
)


def probe(home: str, depth: int, variant: str) -> dict[str, float]:
    import sqlite3
    import time
    import uuid

    from hodei.queueing.app import RUN_JOB_TASK, create_app, provider_queue
    from hodei.settings import Settings

    path = Path(home) / "broker.sqlite"
    app = create_app(Settings(home=Path(home), broker_url=f"sqla+sqlite:///{path}"))
    app.conf.task_send_sent_event = False  # the broker's cost, not Flower's events
    result: dict[str, float] = {}
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with app.producer_or_acquire() as producer:
            producer.maybe_declare(provider_queue(app, QUEUE))
        if variant == "new-noindex":
            with sqlite3.connect(path) as db:
                db.execute("DROP INDEX IF EXISTS ix_kombu_message_priority")
        for run in ("fresh", "reused"):
            start = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for n in range(depth):
                    app.send_task(
                        RUN_JOB_TASK,
                        args=[str(uuid.uuid4()), 1],
                        queue=QUEUE,
                        priority=n % 10,
                        producer=producer,
                        declare=[],
                    )
            result[f"{run}_put_us"] = (time.perf_counter() - start) / depth * 1e6
            select = FIFO_SELECT if variant == "baseline" else PRIORITY_SELECT
            with sqlite3.connect(path) as db:
                (queue_id,) = db.execute(
                    "SELECT id FROM kombu_queue WHERE name = ?", (QUEUE,)
                ).fetchone()
                start = time.perf_counter()
                for _ in range(FIRST):
                    db.execute(select, (queue_id,)).fetchone()
                result[f"{run}_select_us"] = (time.perf_counter() - start) / FIRST * 1e6
            start = time.perf_counter()
            for _ in range(FIRST):
                assert channel.basic_get(QUEUE, no_ack=True) is not None
            first = time.perf_counter() - start
            for _ in range(depth - FIRST):
                assert channel.basic_get(QUEUE, no_ack=True) is not None
            whole = time.perf_counter() - start
            assert channel.basic_get(QUEUE, no_ack=True) is None
            result[f"{run}_get_full_us"] = first / FIRST * 1e6
            result[f"{run}_get_drain_us"] = whole / depth * 1e6
    return result


# -- the parent -------------------------------------------------------------------------

VARIANTS = ("baseline", "new", "new-noindex")
KEYS = [
    f"{run}_{what}"
    for run in ("fresh", "reused")
    for what in ("put_us", "select_us", "get_full_us", "get_drain_us")
]


def run_probe(tree: Path, depth: int, variant: str) -> dict[str, float]:
    env = {**common.process_env(), "PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory(prefix="hodei-bench-broker-") as home:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "probe", home, str(depth), variant],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    if out.returncode != 0:
        raise RuntimeError(f"probe failed in {tree}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "probe":
        print(json.dumps(probe(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="main", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--depths", default="1000,5000", help="messages waiting, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    with common.baseline_tree(args.baseline_ref) as base:
        assert base is not None
        trees = {"baseline": base, "new": common.REPO, "new-noindex": common.REPO}
        for depth in depths:
            for r in range(args.rounds):
                order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    result = run_probe(trees[variant], depth, variant)
                    runs.setdefault((depth, variant), []).append(result)
    summary: dict[str, Any] = {"rounds": args.rounds, "baseline": args.baseline_ref}
    for (depth, variant), results in runs.items():
        for key in KEYS:
            summary[f"{depth}_{variant}_{key}"] = common.median([x[key] for x in results])
            if variant != "baseline":
                pairs = zip(runs[(depth, "baseline")], results, strict=True)
                summary[f"{depth}_{variant}_{key}_ratio"] = common.median(
                    [n[key] / b[key] for b, n in pairs]
                )
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"SQLite broker, us per message, median of {args.rounds} rounds")
    print(f"{'waiting':>7} {'variant':12} {'measure':20} {'us':>9} {'/base':>7}")
    for depth in depths:
        for key in KEYS:
            for variant in VARIANTS:
                ratio = summary.get(f"{depth}_{variant}_{key}_ratio")
                print(
                    f"{depth:7d} {variant:12} {key:20} {summary[f'{depth}_{variant}_{key}']:9.0f} "
                    + (f"{ratio:7.2f}" if ratio is not None else f"{'':7}")
                )
    print("\nreproduce: " + common.command_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
