"""Throughput of hodei against raw Celery, on the same Redis and PostgreSQL.

Three measurements in one run (each repetition on a fresh scratch database and a
flushed broker, unless --database-url / --broker-url point elsewhere):

(a) raw Celery: one worker process, pool "threads", concurrency 2, acks_late,
    prefetch 1, a task that runs ``true`` with ``subprocess.run``; N tasks published
    one by one with ``apply_async`` from this process while the worker consumes.
(b) hodei: N ``true`` jobs submitted one by one with ``hodei.Client.submit`` from this
    process while one ``hodei worker start --concurrency 2`` runs them (the same Celery
    worker shape: hodei's worker also runs pool "threads", prefetch 1, acks_late).
(c) hodei ``submit_many`` of N jobs with no worker consuming (submit rate only); the
    queue it filled is then drained by a fresh worker of the same shape.
(d) with ``--worker-mode api``: (c)'s drain again, by an API-mode worker (HODEI_API_URL,
    no database URL) of a ``hodei server`` this run starts; its ratio to (c)'s drain.

End-to-end throughput = N / (last job finished - first submit), wall clock; for raw
Celery "finished" is the end of the task body, for hodei ``jobs.finished_at`` (written
by the worker in the same transaction as JobSucceeded). Latency = jobs.started_at -
jobs.created_at (hodei), publish time to task start (raw Celery).

    .venv/bin/python benchmarks/throughput.py [--n 2000] [--repeat 1] [--json]
        [--worker-mode direct|api]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

RAW_QUEUE = "bench.raw"
RAW_TASK = "bench.run_true"
CONCURRENCY = 2


# -- (a) raw Celery -------------------------------------------------------------------


class _RawRecorder:
    """Inside the raw worker: counts measured tasks, writes the result at the N-th."""

    def __init__(self, n: int, result_file: Path) -> None:
        self.n = n
        self.result_file = result_file
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []

    def record(self, sent_at: float | None, started_at: float) -> None:
        now = time.time()
        with self.lock:
            if sent_at is None:  # the warm-up task
                _write_json(self.result_file.with_suffix(".warm"), {"at": now})
                return
            self.latencies_ms.append((started_at - sent_at) * 1000)
            if len(self.latencies_ms) == self.n:
                _write_json(self.result_file, {"done_at": now, "latencies_ms": self.latencies_ms})


def raw_app(broker_url: str, recorder: _RawRecorder | None = None) -> Any:
    """A plain Celery app: JSON, acks_late, prefetch 1, no result backend."""
    from celery import Celery

    app = Celery("bench_raw", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=RAW_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name=RAW_TASK, acks_late=True, shared=False)  # type: ignore[untyped-decorator]
    def run_true(sent_at: float | None) -> None:
        started = time.time()
        subprocess.run(["true"], check=True)
        if recorder is not None:
            recorder.record(sent_at, started)

    return app


def raw_worker_main(argv: list[str]) -> int:
    """``throughput.py raw-worker``: the raw Celery worker process of measurement (a)."""
    parser = argparse.ArgumentParser(prog="throughput.py raw-worker")
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--result-file", type=Path, required=True)
    args = parser.parse_args(argv)
    app = raw_app(args.broker_url, _RawRecorder(args.n, args.result_file))
    # The same worker options hodei's `worker start` uses (hodei/runtime/worker.py).
    app.Worker(
        hostname=f"bench-raw@{socket.gethostname()}",
        queues=[RAW_QUEUE],
        pool="threads",
        concurrency=CONCURRENCY,
        prefetch_multiplier=1,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
        loglevel="INFO",
    ).start()
    return 0


@dataclass
class Cpu:
    """CPU seconds spent by each side during a measurement (negative while running)."""

    client_s: float = 0.0
    worker_s: float = 0.0
    postgres_s: float = 0.0

    def per_job_ms(self, n: int) -> dict[str, float]:
        return {k.removesuffix("_s"): v / n * 1000 for k, v in vars(self).items()}


@dataclass
class RawResult:
    jobs_per_s: float
    p50_start_ms: float
    p95_start_ms: float
    cpu_ms: dict[str, float]


def measure_raw(n: int, broker_url: str, procs: common.Processes, work: Path) -> RawResult:
    result_file = work / "raw-result.json"
    argv = [sys.executable, os.path.abspath(__file__), "raw-worker", "--broker-url", broker_url]
    argv += ["--n", str(n), "--result-file", str(result_file)]
    procs.start("raw-worker", argv, common.process_env())
    app = raw_app(broker_url)
    task = app.tasks[RAW_TASK]
    task.apply_async(args=[None])
    common.wait_for(result_file.with_suffix(".warm").exists, timeout=60, what="raw warm-up")
    worker = procs.running("raw-worker")[0].pid
    cpu = Cpu(worker_s=-common.process_cpu_s(worker), client_s=-time.process_time())
    started = time.time()
    for _ in range(n):
        task.apply_async(args=[time.time()])
    cpu.client_s += time.process_time()
    common.wait_for(result_file.exists, timeout=60 + n * 0.1, interval=0.05, what="raw tasks")
    cpu.worker_s += common.process_cpu_s(worker)
    procs.stop("raw-worker")
    app.close()
    result = json.loads(result_file.read_text())
    latencies = result["latencies_ms"]
    return RawResult(
        n / (result["done_at"] - started),
        common.percentile(latencies, 50),
        common.percentile(latencies, 95),
        cpu.per_job_ms(n),
    )


# -- (b) and (c) hodei ----------------------------------------------------------------


@dataclass
class HodeiResult:
    jobs_per_s: float
    submit_jobs_per_s: float
    p50_start_ms: float
    p95_start_ms: float
    submit_many_jobs_per_s: float
    drain_jobs_per_s: float
    cpu_ms: dict[str, float]
    drain_cpu_ms: dict[str, float]
    failed: int = 0
    api_drain_jobs_per_s: float = 0.0
    api_drain_cpu_ms: dict[str, float] | None = None


class HodeiBench:
    """A hodei client, and the worker processes it starts by hand, on one database."""

    def __init__(self, database_url: str, broker_url: str, home: Path, procs: common.Processes):
        from hodei.sdk import Client

        self.run_id = uuid.uuid4().hex[:12]
        self.procs = procs
        self.env = common.process_env(
            HODEI_DATABASE_URL=database_url,
            HODEI_BROKER_URL=broker_url,
            HODEI_HOME=str(home),
            HODEI_WORKER_IDLE_TIMEOUT="600",
            **{common.MARKER: self.run_id},
        )
        self.client = Client.from_env(database_url=database_url, broker_url=broker_url, home=home)
        self.sql = common.sql_engine(database_url)

    def limit_local_workers(self, max_workers: int) -> int:
        """Cap the local provider, so hodei launches no worker besides ours; old cap."""
        with self.sql.begin() as conn:
            old = conn.execute(
                sa.text("SELECT max_workers FROM provider_configs WHERE name = 'local'")
            ).scalar_one()
            conn.execute(
                sa.text("UPDATE provider_configs SET max_workers = :m WHERE name = 'local'"),
                {"m": max_workers},
            )
        return int(old)

    def issue_token(self) -> tuple[str, str]:
        # The SDK's call, not the use case's module: a baseline from before services/
        # was grouped (issue 17) has the same call.
        issued = self.client.create_worker_token("local", ttl_s=900)
        return issued.secret, str(issued.worker.id)

    def hold_capacity(self, worker_id: str) -> None:
        """Mark a token's worker row as launched, so it holds capacity before it registers."""
        with self.sql.begin() as conn:
            conn.execute(
                sa.text("UPDATE workers SET infra_ref = 'bench:reserved' WHERE id = :id"),
                {"id": worker_id},
            )

    def start_server(self) -> tuple[str, int]:
        """``hodei server`` on a free port, for API-mode workers; its URL and pid."""
        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = common.hodei_cli("server", "--port", str(port))
        proc = self.procs.start("hodei-server", argv, self.env)
        url = f"http://127.0.0.1:{port}"

        def live() -> bool:
            try:
                return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        common.wait_for(live, timeout=60, what="hodei server to listen")
        return url, proc.pid

    def start_worker(
        self, name: str, secret: str, worker_id: str, api_url: str | None = None
    ) -> None:
        argv = common.hodei_cli("worker", "start", "--concurrency", str(CONCURRENCY))
        env = {**self.env, "HODEI_OTP_TOKEN": secret}
        if api_url:  # API mode: the server's URL, and no database URL
            del env["HODEI_DATABASE_URL"]
            env["HODEI_API_URL"] = api_url
        self.procs.start(name, argv, env)
        common.wait_for(
            lambda: self._worker_state(worker_id) in ("READY", "BUSY"),
            timeout=60,
            what=f"worker {worker_id} to register",
        )

    def _worker_state(self, worker_id: str) -> str | None:
        with self.sql.connect() as conn:
            state = conn.execute(
                sa.text("SELECT state FROM workers WHERE id = :id"), {"id": worker_id}
            ).scalar()
        return str(state) if state is not None else None

    def postgres_cpu_s(self) -> float:
        """CPU used so far by the PostgreSQL backends serving this database."""
        with self.sql.connect() as conn:
            pids = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
            return sum(common.process_cpu_s(int(pid), children=False) for pid in pids)

    def cpu_start(self, worker: str) -> tuple[Cpu, int]:
        pid = self.procs.running(worker)[0].pid
        cpu = Cpu(-time.process_time(), -common.process_cpu_s(pid), -self.postgres_cpu_s())
        return cpu, pid

    def cpu_end(self, cpu: Cpu, pid: int, client_done: float) -> None:
        cpu.client_s += client_done
        cpu.worker_s += common.process_cpu_s(pid)
        cpu.postgres_s += self.postgres_cpu_s()

    def wait_terminal(self, correlation_id: str, n: int, timeout: float) -> list[Any]:
        """Poll until the n jobs of ``correlation_id`` are terminal; their timestamps."""
        query = sa.text(
            "SELECT count(*) FROM jobs WHERE correlation_id = :c"
            " AND state IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELLED')"
        )

        def done() -> bool:
            with self.sql.connect() as conn:
                return int(conn.execute(query, {"c": correlation_id}).scalar_one()) >= n

        common.wait_for(done, timeout=timeout, interval=0.1, what=f"{n} jobs to finish")
        with self.sql.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT state, created_at, started_at, finished_at FROM jobs"
                        " WHERE correlation_id = :c"
                    ),
                    {"c": correlation_id},
                )
            )

    def check_no_extra_workers(self, expected: int) -> None:
        """Fail if hodei launched workers of its own: the measurement would be void."""
        with self.sql.connect() as conn:
            count = int(conn.execute(sa.text("SELECT count(*) FROM workers")).scalar_one())
        if count != expected:
            raise RuntimeError(f"{count} worker rows, expected the benchmark's {expected}")

    def close(self) -> None:
        self.client.close()
        self.sql.dispose()


def measure_drain(
    n: int, bench: HodeiBench, tag: str, api: tuple[str, int] | None = None
) -> tuple[float, Cpu, list[Any]]:
    """submit_many of n jobs with no worker, then a fresh worker (an API-mode one of
    ``api``'s server, if given) drains them: its rate, CPU (for API mode, the server's in
    the client slot) and rows."""
    from hodei.domain.specs import JobSpec

    # The token's PROVISIONING row, marked as being launched, holds the provider's one
    # slot, so hodei launches no worker of its own (an unused token holds no capacity).
    bulk = f"{bench.run_id}-{tag}"
    secret, worker_id = bench.issue_token()
    bench.hold_capacity(worker_id)
    specs = [JobSpec.create(["true"], name=f"{tag}-{i}", correlation_id=bulk) for i in range(n)]
    bench.client.submit_many(specs)
    name = f"hodei-{tag}"
    bench.start_worker(name, secret, worker_id, api[0] if api else None)
    cpu, pid = bench.cpu_start(name)
    server_cpu = common.process_cpu_s(api[1]) if api else 0.0
    drained = bench.wait_terminal(bulk, n, timeout=120 + n * 0.5)
    bench.cpu_end(cpu, pid, -cpu.client_s)  # this process only polls
    cpu.client_s = common.process_cpu_s(api[1]) - server_cpu if api else 0.0
    bench.procs.stop(name)
    drain_s = max(_ts(r.finished_at) for r in drained) - min(
        _ts(r.started_at) for r in drained if r.started_at
    )
    return n / drain_s, cpu, drained


def measure_hodei(n: int, bench: HodeiBench, worker_mode: str = "direct") -> HodeiResult:
    from hodei.domain.specs import JobSpec

    old_cap = bench.limit_local_workers(1)
    try:
        secret, worker_id = bench.issue_token()
        bench.start_worker("hodei-worker", secret, worker_id)
        warm = bench.client.submit(["true"], name="warm-up", correlation_id=f"{bench.run_id}-warm")
        bench.client.wait(warm.id, timeout=60)

        # (b) one by one, while the worker runs them.
        one_by_one = f"{bench.run_id}-one"
        cpu, pid = bench.cpu_start("hodei-worker")
        started = time.time()
        for i in range(n):
            bench.client.submit(["true"], name=f"bench-{i}", correlation_id=one_by_one)
        submitted, client_done = time.time(), time.process_time()
        rows = bench.wait_terminal(one_by_one, n, timeout=120 + n * 0.5)
        bench.cpu_end(cpu, pid, client_done)
        bench.procs.stop("hodei-worker")
        end_to_end = max(_ts(r.finished_at) for r in rows) - started
        latencies = [(_ts(r.started_at) - _ts(r.created_at)) * 1000 for r in rows if r.started_at]

        # (c) submit_many with no worker consuming, then a fresh worker drains it.
        bulk = f"{bench.run_id}-many"
        secret, worker_id = bench.issue_token()
        bench.hold_capacity(worker_id)
        specs = [JobSpec.create(["true"], name=f"bulk-{i}", correlation_id=bulk) for i in range(n)]
        t0 = time.perf_counter()
        bench.client.submit_many(specs)
        submit_many_s = time.perf_counter() - t0
        bench.start_worker("hodei-drain", secret, worker_id)
        drain_cpu, pid = bench.cpu_start("hodei-drain")
        drained = bench.wait_terminal(bulk, n, timeout=120 + n * 0.5)
        bench.cpu_end(drain_cpu, pid, -drain_cpu.client_s)  # this process only polls
        bench.procs.stop("hodei-drain")
        drain_s = max(_ts(r.finished_at) for r in drained) - min(
            _ts(r.started_at) for r in drained if r.started_at
        )
        # (d) the same drain by an API-mode worker of a server started for it.
        api_rate, api_cpu, api_rows = 0.0, None, []
        if worker_mode == "api":
            api_rate, api_cpu, api_rows = measure_drain(n, bench, "api", bench.start_server())
            bench.procs.stop("hodei-server")
    finally:
        bench.limit_local_workers(old_cap)
    bench.check_no_extra_workers(expected=3 if worker_mode == "api" else 2)
    failed = sum(1 for r in (*rows, *drained, *api_rows) if r.state != "SUCCEEDED")
    return HodeiResult(
        jobs_per_s=n / end_to_end,
        submit_jobs_per_s=n / (submitted - started),
        p50_start_ms=common.percentile(latencies, 50),
        p95_start_ms=common.percentile(latencies, 95),
        submit_many_jobs_per_s=n / submit_many_s,
        drain_jobs_per_s=n / drain_s,
        cpu_ms=cpu.per_job_ms(n),
        drain_cpu_ms=drain_cpu.per_job_ms(n),
        failed=failed,
        api_drain_jobs_per_s=api_rate,
        api_drain_cpu_ms=api_cpu.per_job_ms(n) if api_cpu else None,
    )


def _ts(value: datetime) -> float:
    return value.timestamp()


# -- running and reporting ------------------------------------------------------------


def run_once(args: argparse.Namespace) -> dict[str, float]:
    """One repetition of (a), (b) and (c); every process is stopped before it returns."""
    common.flush_redis(args.broker_url)
    with (
        common.scratch_home("hodei-bench-throughput-") as home,
        common.scratch_database(args.database_url) as database_url,
    ):
        procs = common.Processes(home)
        bench = None
        try:
            raw = measure_raw(args.n, args.broker_url, procs, home)
            bench = HodeiBench(database_url, args.broker_url, home, procs)
            hodei = measure_hodei(args.n, bench, args.worker_mode)
        finally:
            procs.stop_all()
            if bench is not None:
                common.kill_marked(bench.run_id)
                bench.close()
            common.flush_redis(args.broker_url)
    if hodei.failed:
        raise RuntimeError(f"{hodei.failed} hodei job(s) did not succeed")
    api: dict[str, float] = {}
    if hodei.api_drain_cpu_ms is not None:
        api = {
            "api_drain_jobs_per_s": hodei.api_drain_jobs_per_s,
            "api_drain_ratio": hodei.api_drain_jobs_per_s / hodei.drain_jobs_per_s,
            **_prefixed("api_drain_cpu_ms_", hodei.api_drain_cpu_ms),
        }
    return {
        **api,
        "raw_jobs_per_s": raw.jobs_per_s,
        "hodei_jobs_per_s": hodei.jobs_per_s,
        "ratio": hodei.jobs_per_s / raw.jobs_per_s,
        "submit_many_jobs_per_s": hodei.submit_many_jobs_per_s,
        "p50_start_ms": hodei.p50_start_ms,
        "p95_start_ms": hodei.p95_start_ms,
        "hodei_submit_jobs_per_s": hodei.submit_jobs_per_s,
        "hodei_drain_jobs_per_s": hodei.drain_jobs_per_s,
        "raw_p50_start_ms": raw.p50_start_ms,
        "raw_p95_start_ms": raw.p95_start_ms,
        **_prefixed("raw_cpu_ms_", raw.cpu_ms),
        **_prefixed("hodei_cpu_ms_", hodei.cpu_ms),
        **_prefixed("drain_cpu_ms_", hodei.drain_cpu_ms),
    }


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {prefix + key: value for key, value in values.items()}


def summarize(n: int, runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the repetitions."""
    return {"n": n, **{key: common.median([r[key] for r in runs]) for key in runs[0]}}


JSON_KEYS = (
    "n",
    "raw_jobs_per_s",
    "hodei_jobs_per_s",
    "ratio",
    "submit_many_jobs_per_s",
    "p50_start_ms",
    "p95_start_ms",
)


def render_table(result: dict[str, float], repeat: int) -> str:
    s = result
    rows = [
        ("raw Celery, end to end", "raw_jobs_per_s", "raw_", "raw_cpu_ms_"),
        ("hodei, end to end (submit one by one)", "hodei_jobs_per_s", "", "hodei_cpu_ms_"),
        ("hodei, submit one by one (rate)", "hodei_submit_jobs_per_s", None, None),
        ("hodei, submit_many (rate)", "submit_many_jobs_per_s", None, None),
        ("hodei, drain of a pre-filled queue", "hodei_drain_jobs_per_s", None, "drain_cpu_ms_"),
    ]
    what = f"median of {repeat} runs" if repeat > 1 else "1 run"
    lines = [
        f"N = {int(s['n'])} jobs, one worker process, pool threads, "
        f"concurrency {CONCURRENCY} ({what})",
        f"{'':38} {'jobs/s':>7}  {'start p50/p95 ms':>17}  "
        f"{'CPU ms/job: client / worker / PostgreSQL':>40}",
    ]
    for name, rate, latency, cpu in rows:
        lat = ""
        if latency is not None:
            lat = f"{s[latency + 'p50_start_ms']:.1f} / {s[latency + 'p95_start_ms']:.1f}"
        cpu_text = ""
        if cpu is not None:
            cpu_text = " / ".join(
                f"{s[cpu + part]:.2f}" if s.get(cpu + part) else "-"
                for part in ("client", "worker", "postgres")
            )
        lines.append(f"{name:38} {s[rate]:7.1f}  {lat:>17}  {cpu_text:>40}")
    if "api_drain_jobs_per_s" in s:
        cpu_text = " / ".join(
            f"{s['api_drain_cpu_ms_' + part]:.2f}" for part in ("client", "worker", "postgres")
        )
        lines.append(
            f"{'hodei, drain by an API-mode worker':38} {s['api_drain_jobs_per_s']:7.1f}"
            f"  {'':>17}  {cpu_text:>40}"
        )
        lines.append("  (API mode: the client column is the hodei server's CPU)")
    lines.append(f"{'ratio hodei / raw Celery (end to end)':38} {s['ratio']:7.2f}")
    if "api_drain_ratio" in s:
        lines.append(f"{'ratio API-mode / direct drain':38} {s['api_drain_ratio']:7.2f}")
    lines.append(f"reproduce: {common.command_line()}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hodei end-to-end throughput against raw Celery, on Redis and PostgreSQL."
    )
    parser.add_argument("--n", type=int, default=2000, help="jobs per measurement")
    common.add_store_args(parser)
    parser.add_argument("--repeat", type=int, default=1, help="repetitions; medians are shown")
    parser.add_argument(
        "--worker-mode",
        choices=("direct", "api"),
        default="direct",
        help="api: also drain with an API-mode worker of a `hodei server` (no database URL)"
        " and give its ratio to the direct drain",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["raw-worker"]:
        return raw_worker_main(argv[1:])
    args = parse_args(argv)
    with common.exit_on_signals(), common.broker_lock(args.broker_url):
        runs = []
        for i in range(args.repeat):
            runs.append(run_once(args))
            if args.repeat > 1:
                print(f"run {i + 1}: {json.dumps(runs[-1])}", file=sys.stderr)
    result = summarize(args.n, runs)
    if args.json:
        print(render_table(result, args.repeat), file=sys.stderr)
        extra = [k for k in ("api_drain_jobs_per_s", "api_drain_ratio") if k in result]
        print(json.dumps({key: result[key] for key in (*JSON_KEYS, *extra)}))
    else:
        print(render_table(result, args.repeat))
    return 0


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
