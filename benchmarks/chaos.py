"""Chaos: sleep jobs on 3 local workers while a killer SIGKILLs a random worker.

Every job runs ``sleep D && echo "$HODEI_JOB_ID $HODEI_ATTEMPT" >> completions`` with D
uniform in [0.2, 2] s. While they run, a killer thread SIGKILLs a random live worker
process every few seconds. ``hodei scheduler`` runs beside them (beat plus a control
worker) with short heartbeat and stale thresholds, so the reaper marks killed workers
LOST and requeues their running attempts as new attempts.

Workers are relaunched one of two ways (``--relaunch``):

* ``bench`` (default): the benchmark starts each worker itself with a fresh bootstrap
  token (``create_worker_token``) and starts a new one as soon as one dies, so 3 worker
  processes are always running; the local provider is capped at 3 so hodei launches
  none of its own.
* ``hodei``: hodei's own provisioning launches them (the SDK on submit, then beat's
  ``provision`` task every 5 s). A dead worker counts as live until the reaper marks it
  LOST (stale threshold plus up to 15 s, beat's reap interval), so kill less often.

``--kill-scope worker`` (default) kills only the ``hodei worker start`` process, as
``kill -9 PID`` or the kernel's OOM killer would, leaving its job's process group
behind; ``session`` kills the worker and every process of its session, as losing the
container or pod would.

``--worker-mode api`` runs API-mode workers: the run starts a ``hodei server`` on a free
port, sets HODEI_WORKER_API_URL to it (so workers hodei launches are API-mode ones too),
and each worker gets HODEI_API_URL and no database URL; it registers with its token for
a credential and claims, finishes, heartbeats and writes output through the server. The
reaper's LOST revokes a killed worker's credential. It also counts the server's refusals
(``WorkerRequestRefused`` events: a late call of a worker declared LOST).

``--db-outage SECONDS`` replaces the killer with a database outage: the run gets a
PRIVATE PostgreSQL server (``initdb`` and ``pg_ctl`` of PostgreSQL 15 on a free port in
a temporary directory; never the shared one), and ``--outage-at`` seconds after the
submit it stops that server (a fast shutdown: every connection is cut) for SECONDS,
then starts it again. The jobs' timeout is raised above the outage, so every attempt
caught by it can keep its outcome until the database is back. It also counts the
tracebacks and outage lines in the workers' and scheduler's logs.

At the end it counts, for the submitted jobs: succeeded, failed (any terminal state but
SUCCEEDED), lost (not terminal when the run ends, or SUCCEEDED with no completion line),
and duplicated: jobs with more than one SUCCEEDED attempt in ``job_attempts`` or more
than one line in the completions file (the command ran to its end twice). The exit
status is 1 if any job was lost, duplicated or failed.

    .venv/bin/python benchmarks/chaos.py [--jobs 500] [--worker-mode direct|api] [--json]
    .venv/bin/python benchmarks/chaos.py --db-outage 75 [--jobs 60] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

# The private PostgreSQL server is the tests' helper (tests/private_postgres.py).
sys.path.insert(0, str(common.REPO))
from tests import private_postgres

# Not throughput.py's database: each flushes its own.
CHAOS_BROKER_URL = "redis://127.0.0.1:6379/6"
JSON_KEYS = ("submitted", "succeeded", "failed", "lost", "duplicated", "workers_killed")
API_KEYS = ("worker_mode", "workers_with_credential", "requests_refused")
OUTAGE_KEYS = ("outage_s", "running_at_outage", "outcomes_kept", "tracebacks_in_logs")
LIVE = ("PROVISIONING", "REGISTERED", "READY", "BUSY", "DRAINING")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED")


@dataclass
class Kill:
    at: float  # wall clock, as the jobs' completion lines
    pid: int
    worker_id: str


@dataclass
class Fleet:
    """The worker processes of one run and the thread that kills them."""

    args: argparse.Namespace
    run_id: str
    procs: common.Processes
    client: Any
    sql: sa.Engine
    rng: random.Random
    kills: list[Kill] = field(default_factory=list)
    launched: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    # -- workers started by the benchmark (--relaunch bench) --------------------------

    def start_worker(self) -> None:
        from hodei.services.fleet.workers import create_worker_token

        c = self.client.container
        issued = create_worker_token(
            c.store, c.clock, provider_name="local", ttl_s=120, actor="bench:chaos"
        )
        self.launched += 1
        env = worker_env(dict(os.environ), issued.secret)
        self.procs.start(f"worker-{self.launched:03d}", common.hodei_cli("worker", "start"), env)

    def keep_workers(self) -> None:
        """Relaunch a worker as soon as one of ours has exited."""
        while not self.stop.wait(0.2):
            running = sum(1 for p in self.procs.running("worker-"))
            try:
                for _ in range(self.args.workers - running):
                    self.start_worker()
            except Exception as exc:  # a database outage: try again on the next tick
                self.errors.append(f"relaunch: {type(exc).__name__}")
                self.stop.wait(1.0)

    # -- the killer -------------------------------------------------------------------

    def live_workers(self) -> list[tuple[int, str]]:
        """(pid, worker id) of this run's worker processes that are alive now."""
        with self.sql.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, infra_ref FROM workers WHERE state IN :live").bindparams(
                    sa.bindparam("live", expanding=True)
                ),
                {"live": list(LIVE)},
            ).all()
        found = []
        for worker_id, infra_ref in rows:
            pid = _pid(infra_ref)
            if pid is not None and _is_our_worker(pid, self.run_id):
                found.append((pid, str(worker_id)))
        return found

    def kill_loop(self) -> None:
        low, high = self.args.kill_every
        while not self.stop.wait(self.rng.uniform(low, high)):
            try:
                victims = self.live_workers()
            except Exception as exc:  # the run goes on; the summary says what happened
                self.errors.append(f"killer: {exc}")
                continue
            if not victims:
                continue
            pid, worker_id = self.rng.choice(victims)
            for target in _kill_targets(pid, self.args.kill_scope):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(target, signal.SIGKILL)
            self.kills.append(Kill(time.time(), pid, worker_id))

    # -- the database outage (--db-outage) ---------------------------------------------

    def outage(self, pg: private_postgres.PrivatePostgres, report: dict[str, Any]) -> None:
        """Stop the private PostgreSQL ``--outage-at`` s after the submit, for
        ``--db-outage`` s, then start it again."""
        if self.stop.wait(self.args.outage_at):
            return
        with self.sql.connect() as conn:
            report["running_at_outage"] = int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM jobs WHERE correlation_id = :r AND state = 'RUNNING'"
                    ),
                    {"r": self.run_id},
                ).scalar_one()
            )
        pg.stop()
        print(f"chaos: PostgreSQL stopped for {self.args.db_outage:g} s", file=sys.stderr)
        time.sleep(self.args.db_outage)
        pg.start()
        print("chaos: PostgreSQL started again", file=sys.stderr)
        report["outage_done"] = True


def worker_env(inherited: dict[str, str], token: str) -> dict[str, str]:
    """A worker's environment: ``inherited`` and its token; with HODEI_WORKER_API_URL set
    (``--worker-mode api``), as hodei's providers build an API-mode worker's: the
    server's URL as HODEI_API_URL and none of the control plane's keys."""
    from hodei.settings import API_WORKER_OMITS

    env = {**inherited, "HODEI_OTP_TOKEN": token}
    api_url = inherited.get("HODEI_WORKER_API_URL")
    if api_url:
        for name in API_WORKER_OMITS:
            env.pop(name, None)
        env["HODEI_API_URL"] = api_url
    return env


def _pid(infra_ref: str | None) -> int | None:
    if not infra_ref or not infra_ref.startswith("pid:"):
        return None
    try:
        return int(infra_ref[4:].split("@", 1)[0])
    except ValueError:
        return None


def _is_our_worker(pid: int, run_id: str) -> bool:
    """Only ever signal a live ``hodei worker start`` of this very run (pids get reused)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    marked = f"{common.MARKER}={run_id}".encode() in environ
    return state != "Z" and marked and b"worker" in argv and b"start" in argv


def _kill_targets(pid: int, scope: str) -> list[int]:
    if scope == "worker":
        return [pid]
    # The worker leads its session; its jobs run in process groups inside it.
    members = [member for member, fields in common.proc_stats() if int(fields[3]) == pid]
    return [pid, *(m for m in members if m != pid)]


# -- the run ---------------------------------------------------------------------------


def hodei_environment(args: argparse.Namespace, database_url: str, home: Path) -> dict[str, str]:
    api = {"HODEI_WORKER_API_URL": f"http://127.0.0.1:{_free_port()}"}
    return {
        **(api if args.worker_mode == "api" else {}),
        "HODEI_DATABASE_URL": database_url,
        "HODEI_BROKER_URL": args.broker_url,
        "HODEI_HOME": str(home),
        "HODEI_HEARTBEAT_INTERVAL": str(args.heartbeat),
        "HODEI_WORKER_STALE_AFTER": str(args.stale_after),
        "HODEI_WORKER_LOST_REQUEUES": str(args.lost_requeues),
        "HODEI_REPUBLISH_AFTER": str(args.republish_after),
        "HODEI_WORKER_IDLE_TIMEOUT": "60",
        "HODEI_TOKEN_TTL": "120",
        "HODEI_LOG_LEVEL": "INFO",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(procs: common.Processes, url: str) -> None:
    """``hodei server`` at ``url`` (HODEI_WORKER_API_URL), with the run's environment
    (the database URL included: the control plane's side), until it answers."""
    import httpx

    port = url.rsplit(":", 1)[1]
    procs.start("hodei-server", common.hodei_cli("server", "--port", port), dict(os.environ))

    def live() -> bool:
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    common.wait_for(live, timeout=60, what="hodei server to listen")


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ for the run: the SDK, and the local workers hodei
    launches from this process, read them from there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def job_specs(
    args: argparse.Namespace, run_id: str, completions: Path, rng: random.Random
) -> list[Any]:
    from hodei.domain.specs import JobSpec

    line = f'echo "$HODEI_JOB_ID $HODEI_ATTEMPT $(date +%s.%N)" >> {completions}'
    return [
        JobSpec.create(
            f"sleep {rng.uniform(args.min_s, args.max_s):.2f} && {line}",
            name=f"chaos-{i}",
            env={common.MARKER: run_id},
            correlation_id=run_id,
            # An attempt caught by an outage keeps its outcome until its deadline.
            timeout_s=max(300, int(2 * (args.db_outage or 0)) + 120),
        )
        for i in range(args.jobs)
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:12]
    rng = random.Random(args.seed)
    common.flush_redis(args.broker_url)
    if args.db_outage is not None:
        with (
            common.scratch_home("hodei-bench-chaos-") as home,
            private_database() as (pg, database_url),
        ):
            values = {**hodei_environment(args, database_url, home), common.MARKER: run_id}
            with environment(values):
                return _run_in(args, run_id, rng, home, database_url, pg)
    with (
        common.scratch_home("hodei-bench-chaos-") as home,
        common.scratch_database(args.database_url) as database_url,
    ):
        values = {**hodei_environment(args, database_url, home), common.MARKER: run_id}
        with environment(values):
            return _run_in(args, run_id, rng, home, database_url)


@contextmanager
def private_database() -> Iterator[tuple[private_postgres.PrivatePostgres, str]]:
    """A migrated database on a private PostgreSQL server, destroyed afterwards."""
    from hodei.store.engine import create_engine
    from hodei.store.migrate import upgrade

    if not private_postgres.available():
        raise SystemExit(
            f"chaos: --db-outage needs PostgreSQL binaries in {private_postgres.BINDIR}"
        )
    pg = private_postgres.PrivatePostgres()
    try:
        pg.start()
        url = pg.create_database("hodei_chaos")
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield pg, url
    finally:
        pg.destroy()


def _run_in(
    args: argparse.Namespace,
    run_id: str,
    rng: random.Random,
    home: Path,
    database_url: str,
    pg: private_postgres.PrivatePostgres | None = None,
) -> dict[str, Any]:
    from hodei.sdk import Client

    procs = common.Processes(home)
    sql = common.sql_engine(database_url)
    client = Client.from_env()
    fleet = Fleet(args, run_id, procs, client, sql, rng)
    threads: list[threading.Thread] = []
    stack = ExitStack()
    try:
        _cap_local_provider(sql, args.workers)
        if args.worker_mode == "api":
            start_server(procs, os.environ["HODEI_WORKER_API_URL"])
        procs.start("scheduler", common.hodei_cli("scheduler"), dict(os.environ))
        if args.relaunch == "bench":
            for _ in range(args.workers):
                fleet.start_worker()
            threads.append(threading.Thread(target=fleet.keep_workers, daemon=True))
        completions = stack.enter_context(completions_file())
        started = time.monotonic()
        client.submit_many(job_specs(args, run_id, completions, rng))
        outage: dict[str, Any] = {}
        if pg is None:
            threads.append(threading.Thread(target=fleet.kill_loop, daemon=True))
        else:
            threads.append(threading.Thread(target=fleet.outage, args=(pg, outage), daemon=True))
        for thread in threads:
            thread.start()
        timed_out = not _wait_all_terminal(sql, run_id, args.jobs, args.timeout)
        if pg is not None:
            threads[-1].join()  # the outage has ended (all jobs may end before it does)
            timed_out = timed_out or not _wait_all_terminal(sql, run_id, args.jobs, args.timeout)
        elapsed = time.monotonic() - started
        fleet.stop.set()
        for thread in threads:
            thread.join(10)
        _wait_jobs_gone(run_id)
        result = {
            **count(sql, run_id, args.jobs, completions, fleet.kills),
            "workers_killed": len(fleet.kills),
            "workers_launched": _workers_launched(sql),
            "elapsed_s": round(elapsed, 1),
            "timed_out": timed_out,
            "errors": sorted(set(fleet.errors)),
            "worker_mode": args.worker_mode,
            "workers_with_credential": _credentialed(sql),
            "requests_refused": _refusals(sql),
        }
        if pg is not None:
            result.update(
                outage_s=args.db_outage,
                running_at_outage=outage.get("running_at_outage"),
                **_log_counts(home),
            )
        return result
    finally:
        fleet.stop.set()
        procs.stop_all()
        common.kill_marked(run_id)
        client.close()
        sql.dispose()
        common.flush_redis(args.broker_url)
        stack.close()


@contextmanager
def completions_file() -> Iterator[Path]:
    """An empty file every job can append to, removed afterwards. A root worker runs
    its jobs as nobody (HODEI_JOB_USER's default), who can neither enter the 0700
    scratch home nor write to a file of root's: every job would fail."""
    folder = Path(tempfile.mkdtemp(prefix="hodei-bench-chaos-done-"))
    try:
        folder.chmod(0o755)
        path = folder / "completions.log"
        path.touch()
        path.chmod(0o666)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cap_local_provider(sql: sa.Engine, workers: int) -> None:
    with sql.begin() as conn:
        conn.execute(
            sa.text("UPDATE provider_configs SET max_workers = :n WHERE name = 'local'"),
            {"n": workers},
        )


def _wait_all_terminal(sql: sa.Engine, run_id: str, n: int, timeout: float) -> bool:
    query = sa.text(
        "SELECT count(*) FROM jobs WHERE correlation_id = :r AND state IN :terminal"
    ).bindparams(sa.bindparam("terminal", expanding=True))
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        try:
            with sql.connect() as conn:
                done = int(
                    conn.execute(query, {"r": run_id, "terminal": list(TERMINAL)}).scalar_one()
                )
        except sa.exc.DBAPIError:  # --db-outage: the database is down for now
            time.sleep(1.0)
            continue
        if done >= n:
            return True
        if time.monotonic() - last_report >= 15:
            print(f"chaos: {done}/{n} jobs terminal", file=sys.stderr)
            last_report = time.monotonic()
        time.sleep(1.0)
    return False


def _wait_jobs_gone(run_id: str, timeout: float = 15.0) -> None:
    """Let job processes orphaned by killed workers finish (or not) before counting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _job_pids(run_id):
        time.sleep(0.2)


def _job_pids(run_id: str) -> list[int]:
    pids = []
    for pid in common.marked_pids(run_id):
        with suppress(OSError):
            if b"HODEI_JOB_ID=" in Path(f"/proc/{pid}/environ").read_bytes():
                pids.append(pid)
    return pids


def _log_counts(home: Path) -> dict[str, Any]:
    """What the workers and the scheduler logged about the outage."""
    text = [p.read_text(errors="replace") for p in sorted(home.glob("*.log"))]
    text += [p.read_text(errors="replace") for p in sorted(home.glob("**/logs/*.log"))]
    joined = "\n".join(text)
    return {
        "traceback_excerpts": _traceback_excerpts(joined),
        "outcomes_kept": joined.count("its outcome is kept"),
        "outcomes_written_late": joined.count("its kept outcome"),
        "outcomes_given_up": joined.count("gave up writing its outcome"),
        "tracebacks_in_logs": joined.count("Traceback (most recent call last)"),
        "outage_warnings": joined.count("database unreachable"),
        "recovery_lines": joined.count("database reachable again"),
        "log_files": len(text),
    }


def _traceback_excerpts(text: str, limit: int = 5) -> list[str]:
    """For each traceback (up to ``limit``): the log line before it and its last line."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j] and not lines[j][0].isspace()),
            len(lines) - 1,
        )
        before = lines[i - 1][:160] if i else ""
        out.append(f"{before} ... {lines[end][:200]}")
        if len(out) >= limit:
            break
    return out


def _credentialed(sql: sa.Engine) -> int:
    """Workers that registered through the API (each got a credential): all of them in
    API mode, none in direct mode."""
    with sql.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM worker_credentials")).scalar_one())


def _refusals(sql: sa.Engine) -> int:
    """The worker API's refusals (late calls of workers declared LOST, in API mode)."""
    with sql.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM domain_events WHERE event_type = 'WorkerRequestRefused'"
                )
            ).scalar_one()
        )


def _workers_launched(sql: sa.Engine) -> int:
    with sql.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM workers")).scalar_one())


@dataclass(frozen=True)
class Completion:
    """One line of the completions file: the job's command ran to its end."""

    job_id: str
    attempt: int
    at: float


def read_completions(path: Path) -> list[Completion]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append(Completion(parts[0], int(parts[1]), float(parts[2])))
    return out


def count(
    sql: sa.Engine, run_id: str, submitted: int, completions: Path, kills: list[Kill]
) -> dict[str, Any]:
    """The outcome of every submitted job, from the database and the completions file."""
    states, attempts, republished = _load(sql, run_id)
    succeeded_attempts = collections.Counter(j for j, _, s, _ in attempts if s == "SUCCEEDED")
    lost_attempts = collections.Counter(j for j, _, s, _ in attempts if s == "LOST")
    lines = read_completions(completions)
    ran = collections.Counter(c.job_id for c in lines)
    succeeded = {j for j, s in states.items() if s == "SUCCEEDED"}
    unfinished = {j for j, s in states.items() if s not in TERMINAL}
    never_ran = {j for j in succeeded if ran[j] == 0}
    twice_recorded = {j for j, n in succeeded_attempts.items() if n > 1}
    twice_ran = {j for j, n in ran.items() if n > 1 and j in states}
    failed = collections.Counter(s for s in states.values() if s in TERMINAL and s != "SUCCEEDED")
    extra = _extra_runs(lines, twice_ran, attempts, kills)
    return {
        "submitted": submitted,
        "succeeded": len(succeeded),
        "failed": sum(failed.values()),
        "lost": len(unfinished | never_ran) + (submitted - len(states)),
        "duplicated": len(twice_recorded | twice_ran),
        "failed_by_state": dict(failed),
        "unfinished_by_state": dict(collections.Counter(states[j] for j in unfinished)),
        "succeeded_without_completion_line": len(never_ran),
        "duplicated_succeeded_attempts": len(twice_recorded),
        "duplicated_completion_lines": len(twice_ran),
        "extra_runs_by_cause": dict(collections.Counter(c for c, _ in extra)),
        "extra_runs_ms_from_kill": [ms for _, ms in extra if ms is not None],
        "attempts_lost": sum(lost_attempts.values()),
        "jobs_requeued": len(lost_attempts),
        "max_losses_per_job": max(lost_attempts.values(), default=0),
        "jobs_republished": republished,
    }


AttemptRow = tuple[str, int, str, str | None]  # job id, attempt, state, worker id


def _load(sql: sa.Engine, run_id: str) -> tuple[dict[str, str], list[AttemptRow], int]:
    with sql.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, state FROM jobs WHERE correlation_id = :r"), {"r": run_id}
        ).all()
        republished = conn.execute(
            sa.text(
                "SELECT count(*) FROM domain_events e JOIN jobs j ON j.id = e.aggregate_id"
                " WHERE j.correlation_id = :r AND e.event_type = 'JobRepublished'"
            ),
            {"r": run_id},
        ).scalar_one()
        attempts = conn.execute(
            sa.text(
                "SELECT a.job_id, a.attempt_no, a.state, a.worker_id FROM job_attempts a"
                " JOIN jobs j ON j.id = a.job_id WHERE j.correlation_id = :r"
            ),
            {"r": run_id},
        ).all()
    return (
        {str(j): str(s) for j, s in rows},
        [(str(j), int(n), str(s), str(w) if w else None) for j, n, s, w in attempts],
        int(republished),
    )


def _extra_runs(
    lines: list[Completion], jobs: set[str], attempts: list[AttemptRow], kills: list[Kill]
) -> list[tuple[str, int | None]]:
    """Why a command ran to its end more than once: for each completion of an attempt
    hodei did not record as SUCCEEDED, when it ended against when its worker was killed.

    ``after_kill``: it ran on, orphaned, after its worker was SIGKILLed; ``before_kill``:
    it ended but the worker died before recording it (hodei cannot tell it from a job
    that never ran; only an idempotent job is safe there); ``worker_not_killed``: its
    worker was declared lost while alive. Each with the milliseconds from the kill to
    the completion line (negative: before the kill; None: no kill)."""
    rows = {(j, n): (s, w) for j, n, s, w in attempts}
    killed_at = {k.worker_id: k.at for k in kills}
    out: list[tuple[str, int | None]] = []
    for line in lines:
        state, worker = rows.get((line.job_id, line.attempt), ("?", None))
        if line.job_id not in jobs or state == "SUCCEEDED":
            continue
        kill = killed_at.get(worker or "")
        if kill is None:
            out.append(("worker_not_killed", None))
        else:
            cause = "after_kill" if line.at > kill else "before_kill"
            out.append((cause, round((line.at - kill) * 1000)))
    return out


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    if args.db_outage is not None:
        what = (
            f"PostgreSQL down for {args.db_outage:g} s from {args.outage_at:g} s after the submit"
        )
    else:
        what = (
            f"SIGKILL every {args.kill_every[0]:g}-{args.kill_every[1]:g} s "
            f"(scope {args.kill_scope}, relaunch by {args.relaunch})"
        )
    what += f", {args.worker_mode}-mode workers"
    lines = [
        f"chaos: {args.jobs} jobs of {args.min_s:g}-{args.max_s:g} s on {args.workers} workers, "
        + what,
    ]
    for key in (*JSON_KEYS, *(k for k in result if k not in JSON_KEYS)):
        lines.append(f"  {key:36} {result[key]}")
    lines.append(
        f"  settings: HODEI_HEARTBEAT_INTERVAL={args.heartbeat} "
        f"HODEI_WORKER_STALE_AFTER={args.stale_after} "
        f"HODEI_WORKER_LOST_REQUEUES={args.lost_requeues} "
        f"HODEI_REPUBLISH_AFTER={args.republish_after}"
    )
    lines.append(f"reproduce: {common.command_line()}")
    return "\n".join(lines)


def _interval(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    values = (float(low), float(high or low))
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError("use MIN:MAX seconds, 0 < MIN <= MAX")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="default 500 (60 with --db-outage)")
    common.add_store_args(parser, broker_url=CHAOS_BROKER_URL)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=_interval, default=(2.0, 6.0), metavar="MIN:MAX")
    parser.add_argument("--kill-scope", choices=("worker", "session"), default="worker")
    parser.add_argument("--relaunch", choices=("bench", "hodei"), default="bench")
    parser.add_argument(
        "--worker-mode",
        choices=("direct", "api"),
        default="direct",
        help="api: workers talk to a `hodei server` this run starts, with no database URL",
    )
    parser.add_argument("--min-s", type=float, default=0.2, help="shortest job")
    parser.add_argument("--max-s", type=float, default=2.0, help="longest job")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="HODEI_HEARTBEAT_INTERVAL")
    parser.add_argument("--stale-after", type=float, default=5.0, help="HODEI_WORKER_STALE_AFTER")
    parser.add_argument(
        "--lost-requeues", type=int, default=10, help="HODEI_WORKER_LOST_REQUEUES (default 3)"
    )
    parser.add_argument(
        "--republish-after",
        type=float,
        default=30.0,
        help="HODEI_REPUBLISH_AFTER: a QUEUED job whose message died with its worker "
        "before the claim is published again after this many seconds (default 300)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many s")
    parser.add_argument(
        "--db-outage",
        type=float,
        default=None,
        metavar="SECONDS",
        help="instead of killing workers, stop a private PostgreSQL for SECONDS mid-run",
    )
    parser.add_argument(
        "--outage-at", type=float, default=5.0, help="seconds after the submit (default 5)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = 60 if args.db_outage is not None else 500
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with common.exit_on_signals(), common.broker_lock(args.broker_url):
        result = run(args)
    if args.json:
        print(render(result, args), file=sys.stderr)
        keys = (*JSON_KEYS, *API_KEYS, *(OUTAGE_KEYS if args.db_outage is not None else ()))
        print(json.dumps({key: result[key] for key in keys}))
    else:
        print(render(result, args))
    return 0 if result["lost"] == result["duplicated"] == result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
