"""Helpers shared by the benchmarks: scratch databases, broker flushing, and child
processes that are always stopped, whatever way the benchmark ends.

Every process a benchmark starts leads its own session, is tracked here, and is stopped
(SIGTERM to its group, then SIGKILL) on the way out. Processes that hodei itself
launches (local workers) and their jobs carry ``BENCH_RUN_ID`` in their environment,
so :func:`kill_marked` finds exactly those and nothing else on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "HODEI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/5"
MARKER = "BENCH_RUN_ID"


# -- databases and broker -------------------------------------------------------------


def add_store_args(
    parser: argparse.ArgumentParser, *, broker_url: str = DEFAULT_BROKER_URL
) -> None:
    """``--database-url`` and ``--broker-url``, as every benchmark that runs hodei takes
    them (a scratch PostgreSQL database by default, and a Redis database it flushes)."""
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL database to use (migrated if needed; its jobs are kept); "
        "default: a scratch database on 127.0.0.1, dropped afterwards",
    )
    parser.add_argument(
        "--broker-url",
        default=broker_url,
        help="Redis broker; its database is FLUSHED before and after (default: %(default)s)",
    )


def admin_engine(url: str = ADMIN_URL) -> sa.Engine:
    """An autocommit engine without a pool (CREATE/DROP DATABASE need autocommit)."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(database_url: str | None) -> Iterator[str]:
    """Yield a migrated database: ``database_url`` as given (migrated if needed), or a
    fresh ``hodei_bench_*`` database on 127.0.0.1 that is dropped afterwards."""
    from hodei.store.engine import create_engine
    from hodei.store.migrate import upgrade

    if database_url:
        engine = create_engine(database_url)
        upgrade(engine)
        engine.dispose()
        yield database_url
        return
    name = f"hodei_bench_{uuid.uuid4().hex[:10]}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = with_database(ADMIN_URL, name)
    try:
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def sql_engine(database_url: str) -> sa.Engine:
    """A small engine for the benchmark's own bookkeeping queries."""
    url = sa.engine.make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@contextlib.contextmanager
def broker_lock(url: str) -> Iterator[None]:
    """Refuse to run while another benchmark on this machine uses the same broker: both
    flush it and consume the same hodei queues, which would spoil both."""
    import fcntl
    import hashlib

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"hodei-bench-{digest}.lock"
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmark is using the broker {url}; wait for it") from None
        yield


def flush_redis(url: str) -> None:
    """Empty the broker's Redis database so no message of an earlier run is left."""
    if not url.startswith(("redis://", "rediss://")):
        return
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- child processes ------------------------------------------------------------------


class Processes:
    """The child processes of one benchmark run; :meth:`stop_all` ends every one."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own, output to ``<log_dir>/<name>.log``."""
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.log_dir,
        )
        self._procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, wait up to ``timeout``, then SIGKILL it."""
        proc = self._procs.pop(name, None)
        if proc is None:
            return None
        return stop_process(proc, timeout)

    def running(self, prefix: str = "") -> list[subprocess.Popen[bytes]]:
        """This run's processes named ``prefix*`` that have not exited."""
        return [p for n, p in self._procs.items() if n.startswith(prefix) and p.poll() is None]

    def stop_all(self) -> None:
        for name in list(self._procs):
            self.stop(name, timeout=10.0)
        for log in self._logs:
            log.close()
        self._logs.clear()


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM the group ``proc`` leads, then SIGKILL it if the leader is still there.

    Once the leader has been reaped its pid (the group id) may be reused by an unrelated
    process, so a group is only signalled while its leader is known to be unreaped."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def marked_pids(run_id: str) -> list[int]:
    """Live processes whose environment carries ``BENCH_RUN_ID=run_id``."""
    needle = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def kill_marked(run_id: str, *, grace_s: float = 10.0) -> int:
    """SIGTERM every process marked with ``run_id``, then SIGKILL what is left."""
    pids = marked_pids(run_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while marked_pids(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in marked_pids(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def process_env(**values: str) -> dict[str, str]:
    """This process's environment without HODEI_* variables, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env.update(values)
    return env


def hodei_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hodei", *args]


@contextlib.contextmanager
def scratch_home(prefix: str) -> Iterator[Path]:
    """A temporary HODEI_HOME; kept (and its path printed) if the run failed."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"logs kept in {path}", file=sys.stderr)


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so every ``finally`` runs and children are stopped."""

    def _raise(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- measuring ------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def process_cpu_s(pid: int, *, children: bool = True) -> float:
    """CPU seconds (user + system) a process used, with its reaped children's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = sum(int(f) for f in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of its /proc/PID/stat after the command name
    (``fields[1]`` is the parent, ``[3]`` the session, ``[11:15]`` CPU ticks)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue


def tree_cpu_s(root: int) -> float:
    """CPU seconds used by a process and every live descendant (each with its reaped
    children's): a worker with its pool processes and the jobs they ran."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for pid, fields in proc_stats():
        parents[pid] = int(fields[1])
        used[pid] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return sum(used.get(pid, 0.0) for pid in tree)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank, 0 < pct <= 100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def command_line() -> str:
    """How this benchmark was invoked, to print as the command that reproduces it."""
    import shlex

    script = os.path.relpath(sys.argv[0], REPO)
    return " ".join([".venv/bin/python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


@contextlib.contextmanager
def baseline_tree(ref: str | None) -> Iterator[Path | None]:
    """``ref`` checked out in a temporary git worktree, removed afterwards."""
    if ref is None:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="hodei-bench-baseline-"))
    git = ["git", "-C", str(REPO)]
    subprocess.run(
        [*git, "worktree", "add", "--detach", str(path), ref], check=True, capture_output=True
    )
    try:
        yield path
    finally:
        subprocess.run(
            [*git, "worktree", "remove", "--force", str(path)], check=False, capture_output=True
        )
