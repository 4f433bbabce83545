"""hodei through ``hodei server`` (HTTP) against the SDK's local backend, in one run on
the same PostgreSQL and Redis.

One worker (started by hand, concurrency 2; the local provider is capped so nothing
else is launched) runs the jobs while this process submits ``true`` jobs:

- one by one, in rounds of N/4 through the local backend (``Client``) and through the
  API (``HttpClient``, a submitter token, one server process), which goes first
  swapped each round: jobs/s and p50/p95 latency of each submit as the caller sees
  it, and the CPU each party used per job meanwhile (this process, the server, the
  worker with its jobs, the PostgreSQL backends of this run's database): on a machine
  with few cores, the parties of a submit and the worker share them;
- ``submit_many`` through the local backend and over the API (``POST /v1/jobs/batch``),
  500 jobs a call: jobs/s;
- submit-to-finished as the client sees it: a submit, then ``wait`` (a long poll), one
  job at a time, ``--done`` of them through each backend: p50.

Every process it starts (server, worker) is stopped before it returns.

    .venv/bin/python benchmarks/api.py [--n 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

CONCURRENCY = 2
BATCH = 500
JSON_KEYS = [
    "local_submit_per_s",
    "api_submit_per_s",
    "ratio",
    "api_submit_many_per_s",
    "api_submit_p50_ms",
    "api_submit_p95_ms",
    "api_done_p50_ms",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _submits(
    submit: Callable[..., Any], tag: str, count: int, start: int
) -> tuple[float, list[float]]:
    """Seconds for ``count`` submits of ``true``, and each one's latency in ms."""
    latencies = []
    began = time.perf_counter()
    for i in range(start, start + count):
        t0 = time.perf_counter()
        submit("true", name=f"{tag}-{i}")
        latencies.append((time.perf_counter() - t0) * 1000)
    return time.perf_counter() - began, latencies


def _done_ms(client: Any, count: int, tag: str) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        job = client.submit("true", name=f"{tag}-done-{i}")
        finished = client.wait(job.id, timeout=120)
        if finished.state.value != "SUCCEEDED":
            raise RuntimeError(f"job {job.id} ended {finished.state}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(args: argparse.Namespace) -> dict[str, float]:
    from hodei import JobSpec
    from hodei.sdk import Client
    from hodei.sdk_http import HttpClient

    common.flush_redis(args.broker_url)
    with (
        common.scratch_home("hodei-bench-api-") as home,
        common.scratch_database(args.database_url) as database_url,
    ):
        procs = common.Processes(home)
        env = common.process_env(
            HODEI_DATABASE_URL=database_url,
            HODEI_BROKER_URL=args.broker_url,
            HODEI_HOME=str(home),
            HODEI_WORKER_IDLE_TIMEOUT="600",
            HODEI_LOG_LEVEL="WARNING",
        )
        local = Client.from_env(database_url=database_url, broker_url=args.broker_url, home=home)
        try:
            sql = common.sql_engine(database_url)
            with sql.begin() as conn:
                conn.execute(sa.text("UPDATE provider_configs SET max_workers = 1"))
            issued = local.create_worker_token("local", ttl_s=900)
            procs.start(
                "worker",
                common.hodei_cli("worker", "start", "--concurrency", str(CONCURRENCY)),
                {**env, "HODEI_OTP_TOKEN": issued.secret},
            )
            _, token = local.create_api_token("bench", "submitter")
            port = _free_port()
            procs.start(
                "server",
                common.hodei_cli("server", "--port", str(port), "--workers", str(args.workers)),
                env,
            )
            url = f"http://127.0.0.1:{port}"
            common.wait_for(
                lambda: _live(url), timeout=60, what="hodei server to answer /health/live"
            )
            common.wait_for(
                lambda: local.worker(issued.worker.id).state.value in ("READY", "BUSY"),
                timeout=60,
                what="the worker to register",
            )
            api = HttpClient(url, token)
            # Warm both paths (connections, pools, imports) before measuring.
            for client in (local, api):
                for i in range(20):
                    client.submit("true", name=f"warm-{i}")

            seconds = {"local": 0.0, "api": 0.0}
            latencies: dict[str, list[float]] = {"local": [], "api": []}
            cpu: dict[str, dict[str, float]] = {"local": {}, "api": {}}
            rounds = 4
            per_round = max(args.n // rounds, 1)
            backends: list[tuple[str, Any]] = [("local", local), ("api", api)]
            for r in range(rounds):
                for name, client in backends if r % 2 == 0 else backends[::-1]:
                    before = _cpu_s(procs, sql)
                    took, lat = _submits(client.submit, name, per_round, r * per_round)
                    after = _cpu_s(procs, sql)
                    seconds[name] += took
                    latencies[name] += lat
                    for party, used in after.items():
                        cpu[name][party] = cpu[name].get(party, 0.0) + used - before[party]
            done_local = _done_ms(local, args.done, "local")
            done_api = _done_ms(api, args.done, "api")

            many_s = {}
            for name, client in (("local", local), ("api", api)):
                specs = [JobSpec.create("true", name=f"{name}-many-{i}") for i in range(args.n)]
                began = time.perf_counter()
                for i in range(0, len(specs), BATCH):
                    client.submit_many(specs[i : i + BATCH])
                many_s[name] = time.perf_counter() - began
            api.close()
        finally:
            procs.stop_all()
            local.close()
            common.flush_redis(args.broker_url)
    n_each = per_round * rounds
    result = {
        "n": float(args.n),
        "local_submit_per_s": n_each / seconds["local"],
        "api_submit_per_s": n_each / seconds["api"],
        "api_submit_many_per_s": args.n / many_s["api"],
        "local_submit_many_per_s": args.n / many_s["local"],
        "local_submit_p50_ms": common.percentile(latencies["local"], 50),
        "local_submit_p95_ms": common.percentile(latencies["local"], 95),
        "api_submit_p50_ms": common.percentile(latencies["api"], 50),
        "api_submit_p95_ms": common.percentile(latencies["api"], 95),
        "local_done_p50_ms": common.median(done_local),
        "api_done_p50_ms": common.median(done_api),
    }
    result["ratio"] = result["api_submit_per_s"] / result["local_submit_per_s"]
    for name, parties in cpu.items():
        for party, used in parties.items():
            result[f"{name}_cpu_{party}_ms"] = used / n_each * 1000
    return result


PARTIES = ("client", "server", "worker", "postgres")


def _cpu_s(procs: common.Processes, sql: sa.Engine) -> dict[str, float]:
    """CPU seconds so far of each party to the one-by-one submits: this process (for the
    local backend, the whole submit), the server, the worker (its pool processes and the
    jobs they ran too) and the PostgreSQL backends connected to this run's database."""
    with sql.connect() as conn:
        backends = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        postgres = sum(common.process_cpu_s(pid, children=False) for pid in backends)
    return {
        "client": common.process_cpu_s(os.getpid(), children=False),
        "server": sum(common.tree_cpu_s(p.pid) for p in procs.running("server")),
        "worker": sum(common.tree_cpu_s(p.pid) for p in procs.running("worker")),
        "postgres": postgres,
    }


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def render_table(s: dict[str, float], workers: int) -> str:
    lines = [
        f"N = {int(s['n'])} jobs; one worker (concurrency {CONCURRENCY}); "
        f"{workers} server process(es)",
        f"{'':34} {'jobs/s':>8}  {'submit p50 / p95 ms':>20}  {'submit-to-done p50 ms':>22}",
        f"{'local backend, one by one':34} {s['local_submit_per_s']:8.1f}  "
        f"{s['local_submit_p50_ms']:9.2f} / {s['local_submit_p95_ms']:8.2f}  "
        f"{s['local_done_p50_ms']:22.1f}",
        f"{'API, one by one':34} {s['api_submit_per_s']:8.1f}  "
        f"{s['api_submit_p50_ms']:9.2f} / {s['api_submit_p95_ms']:8.2f}  "
        f"{s['api_done_p50_ms']:22.1f}",
        f"{'local backend, submit_many (500)':34} {s['local_submit_many_per_s']:8.1f}",
        f"{'API, submit_many (500 a request)':34} {s['api_submit_many_per_s']:8.1f}",
        f"{'ratio API / local (one by one)':34} {s['ratio']:8.2f}",
        "CPU ms per job while submitting one by one: " + " / ".join(PARTIES),
        *(
            f"  {name:32} " + " / ".join(f"{s[f'{name}_cpu_{p}_ms']:.2f}" for p in PARTIES)
            for name in ("local", "api")
        ),
        f"reproduce: {common.command_line()}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hodei through its HTTP API against the local SDK backend."
    )
    parser.add_argument("--n", type=int, default=2000, help="jobs per measurement")
    parser.add_argument("--done", type=int, default=30, help="submit-then-wait jobs per backend")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    common.add_store_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with common.exit_on_signals(), common.broker_lock(args.broker_url):
        result = run(args)
    if args.json:
        print(render_table(result, args.workers), file=sys.stderr)
        print(json.dumps({key: round(result[key], 3) for key in JSON_KEYS}))
    else:
        print(render_table(result, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
