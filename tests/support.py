"""Helpers for tests that run real hodei processes."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hodei.settings import Settings
from hodei.store.sql_store import SqlStore

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


def fast_settings(home: Path, **overrides: Any) -> Settings:
    """Settings with short intervals, so workers and reapers act within seconds."""
    values: dict[str, Any] = {
        "home": home,
        "heartbeat_interval_s": 0.5,
        "worker_stale_after_s": 4.0,
        "worker_idle_timeout_s": 30.0,
        "token_ttl_s": 30.0,
        "cancel_grace_s": 1.0,
        "log_level": "INFO",
        # Jobs run as the tests' own user, also as root (whose workers' jobs are nobody's
        # by default): they write into the test's private temporary directory.
        # test_job_isolation.py tests the default.
        "job_user": pwd.getpwuid(os.geteuid()).pw_name,
    }
    values.update(overrides)
    return Settings(**values)


def hodei_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a hodei subprocess that uses ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env.update(settings.child_environment())
    env.update(extra)
    return env


def run_cli(
    settings: Settings, *args: str, timeout: float = 120, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hodei ARGS`` as a subprocess against ``settings``."""
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=hodei_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        cwd=settings.home.parent,
    )


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def terminate(process: subprocess.Popen[Any], timeout: float = 10) -> int:
    """SIGTERM a process the test started, SIGKILL it after ``timeout``; its exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def pid_of(infra_ref: str | None) -> int | None:
    if not infra_ref or not infra_ref.startswith("pid:"):
        return None
    return int(infra_ref.split(":", 1)[1].split("@", 1)[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def is_hodei_worker(pid: int) -> bool:
    """Only ever signal processes that really are hodei workers started by a test."""
    if pid <= 1 or pid in (os.getpid(), os.getpgid(0)):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
    except OSError:
        return False
    return b"hodei" in argv and b"worker" in argv


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a worker and the session it leads (its jobs' process groups too)."""
    if not is_hodei_worker(pid):
        return
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            target()


class TcpProxy:
    """A loopback TCP proxy to a real service that a test can cut and restore, to
    simulate an outage without touching the service itself."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        import socket

        self._target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: Any = None
        self._conns: list[Any] = []
        self._thread: Any = None

    def start(self) -> None:
        import socket
        import threading

        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        import socket

        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()

    def _accept(self, server: Any) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: Any, sink: Any) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def process_group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def job_events(client: Any, job_id: Any) -> list[Any]:
    """A job's own events (its timeline without its workers' and tokens' events)."""
    return [e for e in client.timeline(job_id) if e.aggregate_type == "job"]


def is_subsequence(wanted: list[str], events: list[str]) -> bool:
    """Whether ``wanted`` appears in ``events`` in order (other events may interleave)."""
    remaining = iter(events)
    return all(any(kind == seen for seen in remaining) for kind in wanted)


class StoreWithHook:
    """A store that hands each new unit of work's transaction to ``hook`` before use:
    how a test puts a concurrent change at an exact point, on a real database."""

    def __init__(self, store: Any, hook: Callable[[Any], None]) -> None:
        self._store, self._hook = store, hook

    @contextlib.contextmanager
    def _hooked(self, unit: contextlib.AbstractContextManager[Any]) -> Iterator[Any]:
        with unit as tx:
            self._hook(tx)
            yield tx

    def single_write(self) -> contextlib.AbstractContextManager[Any]:
        return self._hooked(self._store.single_write())

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self._hooked(self._store.transaction())

    def reading(self) -> contextlib.AbstractContextManager[Any]:
        return self._store.reading()

    # The store's own choice of unit of work, through the hooked ones above.
    apply = SqlStore.apply


# Commands that leave the job's process group: each process carries a unique argv marker
# (a sleep of 1000.<tag>) so that a scan of /proc finds exactly the ones a test started.
ESCAPES = (
    "setsid sleep 1000.{t}1 > /dev/null 2>&1 &",  # a new session
    "sh -c '(setsid sleep 1000.{t}2 > /dev/null 2>&1 &) &'",  # a daemon's double fork
    "nohup sleep 1000.{t}3 > /dev/null 2>&1 &",  # stays in the group
    "nohup setsid sleep 1000.{t}4 > /dev/null 2>&1 &",  # and leaves it
    "env -i setsid sleep 1000.{t}6 > /dev/null 2>&1 &",  # and without hodei's environment
)


def escaping_command(tag: str, then: str, *, marked_only: bool = False) -> str:
    """A command that starts ESCAPES (``marked_only``: not those that drop the
    environment), waits until they are started, then runs ``then``."""
    escapes = ESCAPES[:-1] if marked_only else ESCAPES
    return "\n".join([*(e.format(t=tag) for e in escapes), "sleep 0.3", then])


def survivors(tag: str) -> list[str]:
    """Live processes (not zombies) whose argv holds the test's marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            argv = raw.replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"sleep 1000.{tag}" in argv and state != "Z":
            found.append(f"{entry}: {argv.strip()}")
    return found


def kill_survivors(tag: str) -> None:
    for line in survivors(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
