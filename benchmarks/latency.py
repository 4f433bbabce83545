"""Latency a user feels: submit + wait, ``hodei job run -- true`` and ``hodei --help``.

Each variant (this checkout, and with ``--baseline-ref REF`` that commit, checked out in
a temporary ``git worktree``) gets its own scratch database, broker database, HODEI_HOME
and one warm worker started from its own code (``hodei worker start --concurrency 2``
with a token; the local provider is capped at that one worker, so nothing else is
launched). Then, round after round, the variants are measured alternately (the CLI
runs interleaved one by one):

- ``sdk``: a fresh process of the variant's code makes a ``Client``, runs two warm-up
  jobs, then times ``submit(["true"])`` + ``wait`` of N jobs one after the other;
  ``wake`` is, for each, the time from the job's ``finished_at`` (written in the
  transaction of its end event) to ``wait``'s return.
- ``job run``: the wall time of ``python -m hodei job run -- true`` (a new process
  each time, imports included), K times.
- ``--help``: the wall time of ``python -m hodei --help``, K times.

Each variant's ``hodei/`` is byte-compiled first, as an installed package is.

Reported: p50/p95 of each over all rounds, per variant and backend (PostgreSQL +
Redis, the embedded SQLite default, and ``api``: PostgreSQL + Redis behind a ``hodei
server`` of the variant's code, the SDK and CLI with only HODEI_API_URL and a submitter
token), and the ratio new/baseline of the medians, with the load average at the end.

    .venv/bin/python benchmarks/latency.py [--baseline-ref main] [--rounds 3] [--n 30]
        [--k 5] [--backends pg,sqlite,api] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

PROBE_TIMEOUT_S = 300


# -- inside a probe process (the variant's code on PYTHONPATH) -----------------------


def probe_sdk(n: int) -> None:
    """Print the ms of n submit + wait, and of each job's recorded end (``finished_at``,
    written with its end event) to wait's return, after two warm-up jobs."""
    from hodei.sdk import Client

    with Client.from_env() as client:
        for _ in range(2):
            client.wait(client.submit(["true"], name="warm-up").id, timeout=60)
        out: dict[str, list[float]] = {"sdk_ms": [], "wake_ms": []}
        for i in range(n):
            t0 = time.perf_counter()
            job = client.submit(["true"], name=f"latency-{i}")
            done = client.wait(job.id, timeout=60)
            returned = time.time()
            out["sdk_ms"].append((time.perf_counter() - t0) * 1000)
            if done.state.value != "SUCCEEDED" or done.finished_at is None:
                raise SystemExit(f"job {job.id} ended {done.state}")
            out["wake_ms"].append((returned - done.finished_at.timestamp()) * 1000)
    print(json.dumps(out))


# -- one variant on one backend ------------------------------------------------------


@dataclass
class Variant:
    name: str
    tree: Path
    backend: str
    home: Path
    env: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = PROBE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def add(self, key: str, values: list[float]) -> None:
        self.samples.setdefault(key, []).extend(values)


@contextlib.contextmanager
def variant(
    name: str, tree: Path, backend: str, procs: common.Processes, run_id: str
) -> Iterator[Variant]:
    """A variant with its database, broker, home and one warm worker of its own code."""
    _compile(tree)
    with (
        common.scratch_home(f"hodei-bench-latency-{name}-") as home,
        _database(backend, name) as (database_url, broker_url),
    ):
        env = common.process_env(
            PYTHONPATH=str(tree),
            HODEI_HOME=str(home),
            HODEI_WORKER_IDLE_TIMEOUT="3600",
            HODEI_LOG_LEVEL="WARNING",
            **{common.MARKER: run_id},
        )
        if database_url:
            env.update(HODEI_DATABASE_URL=database_url, HODEI_BROKER_URL=broker_url)
        v = Variant(name, tree, backend, home, env)
        secret, worker_id, api_token = _prepare(v)
        worker = f"worker-{name}-{backend}"
        server = f"server-{name}-{backend}"
        procs.start(
            worker,
            common.hodei_cli("worker", "start", "--concurrency", "2"),
            {**env, "HODEI_OTP_TOKEN": secret},
        )
        try:
            _wait_ready(v, worker_id)
            if backend == "api":
                port = _free_port()
                procs.start(server, common.hodei_cli("server", "--port", str(port)), env)
                url = f"http://127.0.0.1:{port}"
                common.wait_for(lambda: _live(url), timeout=60, what=f"{name} server")
                # What is measured knows only the server: no database, no broker.
                v.env = {
                    k: val
                    for k, val in env.items()
                    if k not in ("HODEI_DATABASE_URL", "HODEI_BROKER_URL")
                }
                v.env.update(HODEI_API_URL=url, HODEI_API_TOKEN=api_token)
            yield v
        finally:
            if backend == "api":
                procs.stop(server)
            procs.stop(worker)  # before its database goes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _live(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health/live", timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _compile(tree: Path) -> None:
    """Byte-compile the variant's ``hodei/``, as installing the package does. Under
    PYTHONDONTWRITEBYTECODE (set on the machine these numbers come from) a checkout's
    modules were compiled from source by every CLI run, about 0.1 s that no installed
    hodei spends."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "hodei")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def _database(backend: str, name: str) -> Iterator[tuple[str | None, str | None]]:
    if backend == "sqlite":
        yield None, None  # the embedded default under HODEI_HOME
        return
    with (
        _claimed_redis_db() as broker_url,
        common.broker_lock(broker_url),
        common.scratch_database(None) as database_url,
    ):
        common.flush_redis(broker_url)
        try:
            yield database_url, broker_url
        finally:
            common.flush_redis(broker_url)


@contextlib.contextmanager
def _claimed_redis_db() -> Iterator[str]:
    """A Redis database number claimed the way test sessions claim theirs (a key in db
    0), so that flushing it spoils neither a test session nor another benchmark."""
    import redis

    claims = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        for number in range(15, 0, -1):
            if claims.set(f"hodei-test-db:{number}", os.getpid(), nx=True, ex=3600):
                break
        else:
            raise SystemExit("every Redis database 1..15 is claimed; try again later")
        try:
            yield f"redis://127.0.0.1:6379/{number}"
        finally:
            claims.delete(f"hodei-test-db:{number}")
    finally:
        claims.close()


_SETUP = """
import json, sys
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token
with Client.from_env() as client:
    client.update_provider("local", max_workers=1)
    c = client.container
    issued = create_worker_token(c.store, c.clock, provider_name="local", ttl_s=900,
                                 actor="bench:latency")
    _, api_token = client.create_api_token("bench-latency", "submitter")
    print(json.dumps([issued.secret, str(issued.worker.id), api_token]))
"""

_STATE = """
import sys
from uuid import UUID
from hodei.sdk import Client
with Client.from_env() as client, client.container.store.reading() as tx:
    worker = tx.workers.get(UUID(sys.argv[1]))
    print(worker.state if worker else "")
"""


def _prepare(v: Variant) -> tuple[str, str, str]:
    """Migrate (the variant's own code), cap the local provider at one worker, issue a
    token for the worker the benchmark starts and a submitter token for the API."""
    result = v.run("-c", _SETUP)
    if result.returncode:
        raise RuntimeError(f"{v.name}: setup failed: {result.stderr.strip()[-800:]}")
    secret, worker_id, api_token = json.loads(result.stdout.strip().splitlines()[-1])
    return str(secret), str(worker_id), str(api_token)


def _wait_ready(v: Variant, worker_id: str) -> None:
    def ready() -> bool:
        out = v.run("-c", _STATE, worker_id).stdout
        return any(state in out for state in ("READY", "BUSY"))

    common.wait_for(ready, timeout=90, interval=0.5, what=f"{v.name} worker to register")


# -- measuring -----------------------------------------------------------------------


def measure_round(variants: list[Variant], n: int, k: int, first: int) -> None:
    """One round: each variant's submit+wait block, then the CLI runs interleaved one
    by one (new, baseline, new, ...), so both see the same load on a shared machine."""
    order = variants[first:] + variants[:first]
    script = os.path.abspath(__file__)
    for v in order:
        sdk = v.run(script, "--probe-sdk", str(n))
        if sdk.returncode:
            raise RuntimeError(f"{v.name}: sdk probe failed: {sdk.stderr.strip()[-800:]}")
        for key, values in json.loads(sdk.stdout.strip().splitlines()[-1]).items():
            v.add(key, values)
    for _ in range(k):
        for v in order:
            v.add("job_run_ms", [_wall(v, "-m", "hodei", "job", "run", "--", "true")])
    for _ in range(k):
        for v in order:
            v.add("help_ms", [_wall(v, "-m", "hodei", "--help")])


def _wall(v: Variant, *args: str) -> float:
    t0 = time.perf_counter()
    result = v.run(*args)
    elapsed = (time.perf_counter() - t0) * 1000
    if result.returncode:
        raise RuntimeError(f"{v.name}: {' '.join(args)} exited {result.returncode}")
    return elapsed


def summarize(variants: list[Variant]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variants:
        for key, values in v.samples.items():
            name = f"{v.backend}.{v.name}.{key.removesuffix('_ms')}"
            out[f"{name}.p50_ms"] = common.median(values)
            out[f"{name}.p95_ms"] = common.percentile(values, 95)
            out[f"{name}.samples"] = len(values)
    for v in variants:
        if v.name != "new":
            continue
        for key in v.samples:
            base = f"{v.backend}.baseline.{key.removesuffix('_ms')}.p50_ms"
            new = f"{v.backend}.new.{key.removesuffix('_ms')}.p50_ms"
            if base in out:
                out[f"{v.backend}.{key.removesuffix('_ms')}.ratio_p50"] = out[new] / out[base]
    return out


def render(result: dict[str, Any], variants: list[Variant], args: argparse.Namespace) -> str:
    lines = [
        f"latency: {args.rounds} alternating round(s); per round and variant {args.n} "
        f"submit+wait, {args.k} `job run -- true`, {args.k} `--help`",
        f"baseline: {args.baseline_ref or '(none)'} {result.get('baseline_commit', '')}",
        "",
        f"{'backend':8} {'measure':14} {'variant':9} {'p50 ms':>9} {'p95 ms':>9} {'n':>5}",
    ]
    for backend in dict.fromkeys(v.backend for v in variants):
        for key, label in (
            ("sdk", "submit+wait"),
            ("wake", "end to return"),
            ("job_run", "job run true"),
            ("help", "--help"),
        ):
            for name in ("baseline", "new"):
                prefix = f"{backend}.{name}.{key}"
                if f"{prefix}.p50_ms" not in result:
                    continue
                lines.append(
                    f"{backend:8} {label:14} {name:9} {result[prefix + '.p50_ms']:9.1f} "
                    f"{result[prefix + '.p95_ms']:9.1f} {result[prefix + '.samples']:5d}"
                )
            ratio = result.get(f"{backend}.{key}.ratio_p50")
            if ratio is not None:
                lines.append(f"{'':8} {'':14} {'new/base':9} {ratio:9.2f}")
    lines += [
        "",
        f"load average at the end: {result['load_1m']:.2f} {result['load_5m']:.2f} "
        f"{result['load_15m']:.2f}",
        "reproduce: " + common.command_line(),
    ]
    return "\n".join(lines)


def _commit(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", help="also measure this commit, alternately")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=30, help="submit+wait per round")
    parser.add_argument("--k", type=int, default=5, help="CLI runs per round")
    parser.add_argument("--backends", default="pg,sqlite")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--probe-sdk", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_sdk is not None:
        probe_sdk(args.probe_sdk)
        return 0
    run_id = uuid.uuid4().hex[:12]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with (
        common.exit_on_signals(),
        common.baseline_tree(args.baseline_ref) as base,
        tempfile.TemporaryDirectory(prefix="hodei-bench-latency-") as logs,
        contextlib.ExitStack() as stack,
    ):
        procs = common.Processes(Path(logs))
        stack.callback(common.kill_marked, run_id)
        stack.callback(procs.stop_all)
        trees = [("new", common.REPO)] + ([("baseline", base)] if base else [])
        commits = {f"{name}_commit": _commit(tree) for name, tree in trees}
        variants = [
            stack.enter_context(variant(name, tree, backend, procs, run_id))
            for backend in backends
            for name, tree in trees
        ]
        for i in range(args.rounds):
            for backend in backends:
                # Alternate which variant goes first, so neither is always second.
                of_backend = [v for v in variants if v.backend == backend]
                measure_round(of_backend, args.n, args.k, first=i % len(of_backend))
        result = summarize(variants)
    load = dict(zip(("load_1m", "load_5m", "load_15m"), os.getloadavg(), strict=True))
    result = {"rounds": args.rounds, "n": args.n, "k": args.k, **commits, **load, **result}
    print(json.dumps(result) if args.json else render(result, variants, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
