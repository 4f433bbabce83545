"""Run one job's command on a worker machine.

The command runs in its own process group, and in a cgroup of its own where the worker may
create one (``proctree``), so that a timeout, a cancellation or its own exit can take down
everything it started, also what left the group. Output is read and handed to the caller
in batches on the thread that called :meth:`CommandRunner.run`, which starts no threads of
its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from hodei.runtime import proctree
from hodei.runtime.hardening import JobUser
from hodei.services.jobs.attempts import Outcome

logger = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 64 * 1024
SPAWN_ERROR_EXIT_CODE: Final = 127
ALLOWED_WORKER_ENV: Final = (
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR",
)  # fmt: skip

# One read per wake-up, so timers (timeout, cancel, flush) are looked at between reads; a
# command that floods its output waits on the pipe while its batches are written.
_READ_BYTES: Final = 64 * 1024
_MAX_IDLE_WAIT_S: Final = 0.5
_READER_DRAIN_S: Final = 2.0


@dataclass(frozen=True)
class OutputLine:
    """One line of output: ``stream`` is "stdout", "stderr" or "system" (hodei's own notes).

    ``data`` is exactly the bytes the command wrote, its newline included (the last line of
    a stream may have none); ``line`` is their readable text (see :func:`readable`). A line
    made from text alone (hodei's notes) gets ``line`` and a newline, in UTF-8, as its data.
    """

    stream: str
    line: str
    ts: datetime
    data: bytes = field(default=b"", kw_only=True)

    def __post_init__(self) -> None:
        if not self.data:
            object.__setattr__(self, "data", (self.line + "\n").encode())

    @classmethod
    def of_bytes(cls, stream: str, ts: datetime, data: bytes) -> OutputLine:
        return cls(stream, readable(data), ts, data=data)


def readable(data: bytes) -> str:
    """A line's bytes as text that any database column holds: without its line ending
    (newline, or CR LF), bytes that are not UTF-8 and NUL as U+FFFD. Lossy on purpose: the
    exact bytes are kept beside it."""
    text = data.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


def build_job_env(
    job_env: Mapping[str, str],
    extra: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    *,
    user: JobUser | None = None,
) -> dict[str, str]:
    """The environment a job's command sees.

    A small allow-list from the worker's own environment (``base``, default ``os.environ``),
    then the job's env, then ``extra`` (e.g. HODEI_JOB_ID). Worker secrets (database URLs,
    tokens) never leak because nothing else is copied. A job run as another ``user``
    inherits only the directories of the worker's PATH that any user may search (see
    :func:`searchable_path`); a PATH in the job's own env is kept as it is.
    """
    source = os.environ if base is None else base
    env = {name: source[name] for name in ALLOWED_WORKER_ENV if name in source}
    if user is not None and "PATH" in env:
        env["PATH"] = searchable_path(env["PATH"])
    env.update(job_env)
    env.update(extra)
    return env


def searchable_path(path: str) -> str:
    """``path`` (a PATH) without the directories another user cannot search: those with
    an ancestor (or themselves) missing the others' execute bit, such as root's
    ``/root/.cargo/bin``. Looking a command up in one of them fails with EACCES, which
    execvp and the shell report (and keep) as "permission denied" even when the command
    exists nowhere: a root worker's job, run as ``nobody``, read a missing command as a
    refused one. Relative and missing entries go too (a job runs in another directory)."""
    kept: list[str] = []
    for entry in path.split(os.pathsep):
        if entry and entry not in kept and os.path.isabs(entry) and _others_may_search(entry):
            kept.append(entry)
    return os.pathsep.join(kept)


def _others_may_search(directory: str) -> bool:
    path = os.path.realpath(directory)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


class GroupGuard(Protocol):
    """Kills a job's processes if the worker dies while it runs (see orphan_guard): its
    process group, its cgroup (if any) and every process with its run marker."""

    def watch(self, pgid: int, run_id: str = "", cgroup: str | None = None) -> None: ...

    def release(self, pgid: int) -> None: ...


@dataclass(frozen=True, kw_only=True)
class CommandRunner:
    """Runs commands; it holds only immutable settings, so many threads may share one."""

    flush_interval_s: float = 0.25
    flush_max_lines: int = 100
    grace_s: float = 5.0
    cancel_check_interval_s: float = 0.5
    guard: GroupGuard | None = None
    use_cgroup: bool = True  # where possible (proctree.RunCgroup); the sweep runs anyway
    user: JobUser | None = None  # another user to run commands as (a root worker's jobs)

    def __post_init__(self) -> None:
        if self.flush_max_lines < 1:
            raise ValueError("flush_max_lines must be at least 1")
        if min(self.flush_interval_s, self.grace_s, self.cancel_check_interval_s) < 0:
            raise ValueError("intervals must not be negative")

    def run(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        timeout_s: float,
        on_output: Callable[[list[OutputLine]], None],
        should_cancel: Callable[[], bool],
    ) -> Outcome:
        """Run ``command`` (a string goes through ``/bin/sh -c``) to the end; never raises for
        a command that cannot start. The command's env gets ``HODEI_RUN_ID``, the marker by
        which its processes are found however they detach. Exceptions from ``on_output``
        are logged and the batch is dropped, so the callback should do its own retrying
        and say what it lost (as ``attempt_runner.LogSink`` does)."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        if self.user is not None:
            env = {**env, "HOME": self.user.home, "USER": self.user.name, "LOGNAME": self.user.name}
            cwd = cwd if cwd is not None else _reachable_cwd()
        return _Run(self, on_output, should_cancel).execute(argv, env, cwd, timeout_s)


class _Run:
    """The state of one run(). One thread does everything: a selector waits on both pipes
    and on the main process's exit, so a run starts no threads of its own (where pidfds
    exist) and output is handed over on the caller's thread."""

    def __init__(
        self,
        cfg: CommandRunner,
        on_output: Callable[[list[OutputLine]], None],
        should_cancel: Callable[[], bool],
    ) -> None:
        self._cfg = cfg
        self._on_output = on_output
        self._should_cancel = should_cancel
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._pending: list[OutputLine] = []
        self._last_flush = time.monotonic()
        self._exited_at: float | None = None
        self._stop_reason: str | None = None  # "timeout" or "cancel"
        self._kill_at: float | None = None  # when SIGTERM's grace runs out; None once killed
        self._cgroup: proctree.RunCgroup | None = None

    def execute(
        self, argv: list[str], env: Mapping[str, str], cwd: str | None, timeout_s: float
    ) -> Outcome:
        started = time.monotonic()
        if not argv:
            return self._spawn_failed("empty command", started)
        run_id = uuid.uuid4().hex
        env = {**env, proctree.RUN_ID_ENV: run_id}
        self._cgroup = proctree.RunCgroup.create(run_id) if self._cfg.use_cgroup else None
        try:
            with proctree.TRACKER.spawning():
                with (
                    self._cgroup.entered()
                    if self._cgroup
                    else contextlib.nullcontext(True) as inside
                ):
                    proc = _spawn(argv, env, cwd, self._cfg.user)
                proctree.TRACKER.started(proc.pid, run_id)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if self._cgroup is not None:
                self._cgroup.remove()
            message = _spawn_error_message(exc, argv, cwd, env.get("PATH", os.defpath))
            return self._spawn_failed(message, started)
        if self._cgroup is not None and not inside:
            self._cgroup.remove()
            self._cgroup = None
        guard = self._cfg.guard
        if guard is not None:
            guard.watch(proc.pid, run_id, self._cgroup.path if self._cgroup else None)
        exit_watch: _ExitWatch | None = None
        tree_ended = False
        try:
            exit_watch = _ExitWatch(proc)
            self._watch(proc, exit_watch)
            self._supervise(proc.pid, started + timeout_s, timeout_s)
            returncode = _end_group(proc)
            self._end_tree(proc.pid, run_id)
            tree_ended = True
            self._drain()
        finally:
            if proc.returncode is None:  # leaving on an exception: the job must not outlive us
                _end_group(proc)
            if not tree_ended:
                self._end_tree(proc.pid, run_id)
            # Closing gives a process that escaped the group and still writes EPIPE, not a
            # block. Closing a pipe twice (a reader closes it at its end) is harmless.
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            self._selector.close()
            if exit_watch is not None:
                exit_watch.close()
            if guard is not None:
                guard.release(proc.pid)
        self._flush()
        return Outcome(
            exit_code=returncode if returncode >= 0 else None,
            signal=-returncode if returncode < 0 else None,
            timed_out=self._stop_reason == "timeout",
            cancelled=self._stop_reason == "cancel",
            duration_ms=_ms_since(started, self._exited_at),
        )

    def _spawn_failed(self, message: str, started: float) -> Outcome:
        self._system(f"hodei: {message}")
        self._flush()
        return Outcome(
            exit_code=SPAWN_ERROR_EXIT_CODE,
            signal=None,
            timed_out=False,
            cancelled=False,
            duration_ms=_ms_since(started),
            error=message,
        )

    def _watch(self, proc: subprocess.Popen[bytes], exit_watch: _ExitWatch) -> None:
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe, selectors.EVENT_READ, _LineReader(stream))
        self._selector.register(exit_watch.fileno(), selectors.EVENT_READ, exit_watch)

    def _supervise(self, pid: int, deadline: float, timeout_s: float) -> None:
        """Pass output on and enforce timeout and cancellation until the main process exits."""
        # The first check waits one interval: callers start a run right after checking the
        # job is still wanted, and for short commands this saves a query per run.
        next_cancel_check = time.monotonic() + self._cfg.cancel_check_interval_s
        while self._exited_at is None:
            now = time.monotonic()
            wakeups = [now + _MAX_IDLE_WAIT_S]
            if self._stop_reason is None:
                if now >= deadline:
                    self._stop(pid, "timeout", f"timeout after {timeout_s:g}s")
                elif now >= next_cancel_check:
                    next_cancel_check = now + self._cfg.cancel_check_interval_s
                    if self._cancel_requested():
                        self._stop(pid, "cancel", "cancelled")
            if self._stop_reason is None:
                wakeups += [deadline, next_cancel_check]
            if self._kill_at is not None and now >= self._kill_at:
                self._kill_at = None
                _killpg(pid, signal.SIGKILL)
                if self._cgroup is not None:
                    self._cgroup.kill()
                self._system(
                    f"hodei: still running {self._cfg.grace_s:g}s after SIGTERM,"
                    " sent SIGKILL to the process group"
                )
            if self._kill_at is not None:
                wakeups.append(self._kill_at)
            self._receive(max(0.0, min(*wakeups, self._flush_due()) - now))

    def _end_tree(self, pid: int, run_id: str) -> None:
        """Kill what the command left running outside its process group: its cgroup's
        processes, then every orphan with its marker (``proctree``), and say so."""
        proctree.TRACKER.ended(pid)
        left = 0
        if self._cgroup is not None:
            members = self._cgroup.pids()
            left = len(proctree.outside_group(members, pid))
            if members:
                self._cgroup.kill()
            self._cgroup.remove()  # waits until its processes are gone
        left += proctree.TRACKER.sweep(run_id)
        if left:
            logger.info("killed %d process(es) the command left outside its group", left)
            self._system(
                f"hodei: killed {left} process(es) the command left running"
                " outside its process group"
            )

    def _drain(self) -> None:
        """Read the pipes to their end, waiting a bounded time for them to close."""
        give_up_at = time.monotonic() + _READER_DRAIN_S
        while self._open_pipes():
            now = time.monotonic()
            if now >= give_up_at:
                # Only a process that escaped even the sweep (another user's, through sudo)
                # can still hold the pipes.
                logger.warning("output pipes still open after the command ended; not waiting")
                self._system("hodei: output still open after the command ended; stopped reading")
                return
            self._receive(max(0.0, min(give_up_at, self._flush_due()) - now))

    def _open_pipes(self) -> bool:
        return any(isinstance(k.data, _LineReader) for k in self._selector.get_map().values())

    def _receive(self, timeout: float) -> None:
        """Wait up to ``timeout`` for output or the exit, handle what came, flush if due."""
        for key, _ in self._selector.select(timeout):
            if isinstance(key.data, _LineReader):
                self._read(key, key.data)
            else:
                self._selector.unregister(key.fileobj)
                self._exited_at = time.monotonic()
        if time.monotonic() >= self._flush_due():
            self._flush()

    def _read(self, key: selectors.SelectorKey, reader: _LineReader) -> None:
        pipe = key.fileobj
        try:
            chunk = os.read(key.fd, _READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            logger.warning("reading the command's %s failed", reader.stream, exc_info=True)
            chunk = b""
        now = datetime.now(UTC)
        for stream, data in reader.feed(chunk) if chunk else reader.finish():
            self._add(OutputLine.of_bytes(stream, now, data))
        if not chunk:
            self._selector.unregister(pipe)
            pipe.close()  # type: ignore[union-attr]

    def _add(self, line: OutputLine) -> None:
        self._pending.append(line)
        if len(self._pending) >= self._cfg.flush_max_lines:
            self._flush()

    def _flush_due(self) -> float:
        """When the pending lines must go out by the interval rule (never if there are none)."""
        return self._last_flush + self._cfg.flush_interval_s if self._pending else float("inf")

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        try:
            self._on_output(batch)
        except Exception:
            logger.exception("on_output failed; %d output lines dropped", len(batch))

    def _system(self, text: str) -> None:
        self._add(OutputLine("system", text, datetime.now(UTC)))

    def _stop(self, pid: int, reason: str, what: str) -> None:
        self._stop_reason = reason
        self._kill_at = time.monotonic() + self._cfg.grace_s
        _killpg(pid, signal.SIGTERM)
        if self._cgroup is not None:
            self._cgroup.signal(signal.SIGTERM)  # what left the group gets the grace too
        self._system(f"hodei: {what}, sent SIGTERM to the process group")

    def _cancel_requested(self) -> bool:
        try:
            return bool(self._should_cancel())
        except Exception:
            logger.exception("should_cancel failed; treating it as not cancelled")
            return False


class _LineReader:
    """Splits one stream's bytes into lines, each with its newline, as ``(stream, bytes)``.

    A line longer than MAX_LINE_BYTES keeps its first MAX_LINE_BYTES (given a newline, so
    what follows starts a line of its own); the rest is skipped, and when the line ends a
    note in the "system" stream says how long it was, so the job's own stream holds only
    what the command wrote."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._partial = b""
        self._cut_length: int | None = None  # bytes so far of a line that was cut

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        out: list[tuple[str, bytes]] = []
        for line in lines:
            if self._cut_length is not None:
                out.append(self._cut_note(self._cut_length + len(line)))
                self._cut_length = None
            elif len(line) > MAX_LINE_BYTES:
                out += [(self.stream, line[:MAX_LINE_BYTES] + b"\n"), self._cut_note(len(line))]
            else:
                out.append((self.stream, line + b"\n"))
        if self._cut_length is not None:
            self._cut_length += len(self._partial)
            self._partial = b""
        elif len(self._partial) > MAX_LINE_BYTES:
            out.append((self.stream, self._partial[:MAX_LINE_BYTES] + b"\n"))
            self._cut_length, self._partial = len(self._partial), b""
        return out

    def finish(self) -> list[tuple[str, bytes]]:
        """The last line, if the stream did not end with a newline (kept without one)."""
        rest, self._partial = self._partial, b""
        if self._cut_length is not None:
            length, self._cut_length = self._cut_length, None
            return [self._cut_note(length)]
        return [(self.stream, rest)] if rest else []

    def _cut_note(self, length: int) -> tuple[str, bytes]:
        note = (
            f"hodei: a {self.stream} line of {length} bytes was cut to its first"
            f" {MAX_LINE_BYTES} bytes (longer lines are not kept whole)\n"
        )
        return ("system", note.encode())


class _ExitWatch:
    """A file descriptor that becomes readable when the main process exits, without
    reaping it: the leader stays a zombie, which pins its process group id until run()
    has killed the rest of the group. A pidfd where the kernel has them (Linux 5.3+);
    elsewhere a thread waits and writes to a pipe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._thread: threading.Thread | None = None
        try:
            self._fd = os.pidfd_open(proc.pid)
            self._write_fd: int | None = None
        except (AttributeError, OSError):
            self._fd, self._write_fd = os.pipe()
            self._thread = threading.Thread(
                target=self._wait, args=(proc,), name=f"hodei-{proc.pid}-wait", daemon=True
            )
            self._thread.start()

    def fileno(self) -> int:
        return self._fd

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            if hasattr(os, "waitid"):
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            else:
                proc.wait()
        except OSError:
            proc.wait()  # someone else reaped it; Popen copes and reports 0
        finally:
            assert self._write_fd is not None
            os.write(self._write_fd, b"x")

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()  # the process is reaped by now, so this is immediate
            assert self._write_fd is not None
            os.close(self._write_fd)
        os.close(self._fd)


def _spawn(
    argv: list[str], env: Mapping[str, str], cwd: str | None, user: JobUser | None = None
) -> subprocess.Popen[bytes]:
    as_user: dict[str, object] = {}
    if user is not None:
        as_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        # Its own process group, so killpg reaches all of it; but the worker's session, so
        # a provider that removes a dead worker can find and kill its jobs by session id.
        process_group=0,
        close_fds=True,
        **as_user,
    )


def _reachable_cwd() -> str:
    """The worker's working directory if any user may enter it, else ``/``: a job run as
    another user must not start in a directory it cannot use (root's home)."""
    here = os.getcwd()
    return here if _others_may_search(here) else "/"


def _spawn_error_message(
    exc: Exception, argv: list[str], cwd: str | None, path: str | None = None
) -> str:
    if not isinstance(exc, OSError):
        return f"cannot start command: {exc}"
    # subprocess reports a failed chdir with the working directory as the filename.
    if cwd is not None and exc.filename == cwd and argv[0] != cwd:
        if isinstance(exc, FileNotFoundError):
            return f"working directory does not exist: {cwd}"
        if isinstance(exc, NotADirectoryError):
            return f"working directory is not a directory: {cwd}"
        return f"cannot enter working directory {cwd}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return f"command not found: {argv[0]}"
    if isinstance(exc, PermissionError):
        if "/" not in argv[0] and not _on_path(argv[0], path or ""):
            # execvp keeps EACCES from a directory of PATH the job's user cannot search
            # over the ENOENT of the others: the command is missing, not refused.
            return f"command not found: {argv[0]}"
        return f"permission denied: {argv[0]}"
    return f"cannot start {argv[0]}: {exc.strerror or exc}"


def _on_path(name: str, path: str) -> bool:
    """Whether a file ``name`` is in a directory of ``path``, as the worker sees them."""
    return any(os.path.exists(os.path.join(d or ".", name)) for d in path.split(os.pathsep))


def _end_group(proc: subprocess.Popen[bytes]) -> int:
    """Kill what is left of the job's process group, reap it, return the leader's code."""
    # The leader is not reaped yet (alive, or a zombie thanks to WNOWAIT), so the group id
    # cannot have been reused: all in the group was started by the job and must not outlive it.
    _killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    if hasattr(os, "waitid") and hasattr(os, "P_PGID"):
        # Orphans of the job are reparented to this process when it is PID 1 of a container
        # or a child subreaper; reap them so they do not stay behind as zombies. The group
        # id stays pinned while any of them is unreaped.
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitid(os.P_PGID, proc.pid, os.WEXITED)
    return returncode


def _killpg(pgid: int, sig: signal.Signals) -> None:
    # Already gone is fine; macOS answers EPERM for a group left with only zombies.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _ms_since(started: float, ended: float | None = None) -> int:
    return int(((time.monotonic() if ended is None else ended) - started) * 1000)
