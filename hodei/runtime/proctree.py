"""Find and end every process a job started, also the ones that left its process group.

A job's command runs in its own process group, but any process can leave that group
(``setsid``, a daemon's double fork, a shell with job control), and ``killpg`` no longer
reaches it. Two mechanisms find such processes (docs/architecture.md, "Run"):

- **a cgroup (v2) per run**, where the worker may create one under its own cgroup: the
  kernel keeps every descendant in it whatever it does, and ``cgroup.kill`` ends them all;
- **everywhere**, an environment marker (``HODEI_RUN_ID``) that descendants inherit, and
  the worker as a child subreaper, so orphans re-parent to it instead of to init. At the
  end of a run the sweep walks the worker's descendants and kills the ones whose marker
  is the run's (or that carry none, when the worker runs nothing else).

Only Linux has either; elsewhere both are no-ops and the process group is what is ended.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

RUN_ID_ENV: Final = "HODEI_RUN_ID"
_PR_SET_CHILD_SUBREAPER: Final = 36
_PR_GET_CHILD_SUBREAPER: Final = 37
_SWEEP_ROUNDS: Final = 10  # a process may fork while the sweep kills; look again
_REAP_WAIT_S: Final = 2.0
_CGROUP_EMPTY_WAIT_S: Final = 2.0


@dataclass(frozen=True)
class _Stat:
    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # in clock ticks since boot: with the pid, names one process for good


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return _Stat(pid, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19]))


def _children(pid: int, *, main_thread_only: bool = False) -> list[int] | None:
    """The children of ``pid`` (all its threads', or its main thread's), or None where the
    kernel cannot say."""
    try:
        tids = [str(pid)] if main_thread_only else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            if main_thread_only:
                return None
            continue  # the thread ended meanwhile
        except OSError:
            return None  # a kernel without CONFIG_PROC_CHILDREN
    return found


def _orphans_parent(everything: bool) -> list[int] | None:
    """This process's children that may be orphans it adopted. The kernel re-parents an
    orphan to the subreaper's first live thread, the main thread while it runs (and a
    worker's main thread runs Celery until the worker ends); the other threads' children
    are the runs' main processes, recorded. Reading one file instead of one per thread
    keeps the sweep cheap on every attempt; ``everything`` reads them all."""
    return _children(os.getpid(), main_thread_only=not everything)


def _all_pids() -> list[int]:
    try:
        return [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []


def run_marker(pid: int) -> str | None:
    """The ``HODEI_RUN_ID`` a process started with; None if it has none or is unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None
    prefix = RUN_ID_ENV.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _kill(proc: _Stat) -> None:
    """SIGKILL ``proc`` unless its pid now names another process."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        fd = None  # no pidfds: the start time check below narrows the window
    try:
        now = _stat(proc.pid)
        if now is None or now.start != proc.start:
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd is not None:
            os.close(fd)


def _libc() -> ctypes.CDLL | None:
    global _libc_handle
    if _libc_handle is None and sys.platform == "linux":
        with contextlib.suppress(OSError):
            _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


_libc_handle: ctypes.CDLL | None = None


def is_subreaper() -> bool:
    libc = _libc()
    if libc is None:
        return False
    try:
        flag = ctypes.c_int(0)
        return bool(
            libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value
        )
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans; False where impossible."""
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Tracker:
    """This process's record of the runs it supervises and of its own helper processes.

    One per process (``TRACKER``): the sweep tells a job's orphan from another run's or
    from the worker's helpers by it. Spawning a run and sweeping hold one lock, so a
    child that is forked but not yet recorded is never taken for an orphan.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaders: dict[int, str] = {}  # pid of a run's main process -> its run id
        self._helpers: set[int] = set()
        self.adopts_orphans = False

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        with self._lock:
            yield

    def started(self, pid: int, run_id: str) -> None:
        """Record a run's main process; call inside :meth:`spawning`."""
        self._leaders[pid] = run_id

    def ended(self, pid: int) -> None:
        with self._lock:
            self._leaders.pop(pid, None)

    def add_helper(self, pid: int) -> None:
        """A child of this process that is no job's (the orphan guard)."""
        with self._lock:
            self._helpers.add(pid)

    def adopt_orphans(self) -> bool:
        """For a worker process: become a subreaper and treat every child it did not
        start itself as a job's leftover (killed when no run of its own is active)."""
        self.adopts_orphans = become_subreaper()
        return self.adopts_orphans

    def sweep(self, run_id: str | None) -> int:
        """Kill what run ``run_id`` (None: any ended run) left running; how many."""
        killed = 0
        for _ in range(_SWEEP_ROUNDS):
            with self._lock:
                victims, zombies = self._victims(run_id)
                for proc in victims:
                    _kill(proc)
                _reap(zombies)
                if victims:
                    self._wait_gone(victims, everything=run_id is None)
            killed += len(victims)
            if not victims:
                break
        return killed

    def _victims(self, run_id: str | None) -> tuple[list[_Stat], list[int]]:
        """The processes to kill, and this process's ended orphans to reap."""
        me = os.getpid()
        mine = _orphans_parent(run_id is None) if is_subreaper() else None
        if mine is None:
            # Orphans went to init (or the kernel cannot list children): only the marker
            # tells which processes are the run's, so look at every process.
            if not run_id:
                return [], []
            found = [
                s
                for pid in _all_pids()
                if pid != me and run_marker(pid) == run_id and (s := _stat(pid)) is not None
            ]
            return found, []
        own_group, own_marker = os.getpgrp(), os.environ.get(RUN_ID_ENV)
        active = set(self._leaders.values()) - {run_id}
        victims: list[_Stat] = []
        zombies: list[int] = []
        for pid in mine:
            root = _stat(pid)
            if root is None or not self._is_orphan(root, own_group):
                continue
            if root.state == "Z":
                if self.adopts_orphans:
                    zombies.append(pid)
                continue
            marker = run_marker(pid)
            if marker == own_marker:
                marker = None  # inherited from this process (itself run by a hodei job)
            if marker in active:
                continue  # another run's, still running: its own end will sweep it
            if not self.adopts_orphans and (run_id is None or marker != run_id):
                continue  # not a worker: only what is certainly the run's
            if marker is None and active:
                continue  # no telling whose: wait until this worker runs nothing else
            victims += [root, *_descendants(pid)]
        return victims, zombies

    def _is_orphan(self, proc: _Stat, own_group: int) -> bool:
        # The worker's own helpers run in its process group (libraries' subprocesses) or
        # are recorded; a run's main process is recorded until it is reaped.
        return (
            proc.pgid != own_group
            and proc.pid not in self._leaders
            and proc.pid not in self._helpers
        )

    def _wait_gone(self, killed: list[_Stat], *, everything: bool) -> None:
        """Wait (bounded) until the killed processes are gone, reaping those that are this
        process's children, so they do not stay zombies."""
        ours = {p.pid for p in killed}
        give_up_at = time.monotonic() + _REAP_WAIT_S
        while True:
            _reap(self._zombies(ours, everything))
            if all(_gone(p) for p in killed) or time.monotonic() >= give_up_at:
                break
            time.sleep(0.005)
        # Once all are gone their parents are too, so the last orphans are ours by now.
        _reap(self._zombies(ours, everything))

    def _zombies(self, killed: set[int], everything: bool) -> list[int]:
        own_group = os.getpgrp()
        found = []
        for pid in _orphans_parent(everything) or []:
            child = _stat(pid)
            if child is None or child.state != "Z":
                continue
            if pid in killed or (self.adopts_orphans and self._is_orphan(child, own_group)):
                found.append(pid)
        return found


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _gone(proc: _Stat) -> bool:
    now = _stat(proc.pid)
    return now is None or now.start != proc.start or now.state == "Z"


def outside_group(pids: list[int], pgid: int) -> list[int]:
    """Those of ``pids`` that are not in process group ``pgid``."""
    return [p for p in pids if (s := _stat(p)) is not None and s.pgid != pgid]


def _descendants(pid: int) -> list[_Stat]:
    found: list[_Stat] = []
    stack = [pid]
    while stack:
        for child in _children(stack.pop()) or []:
            if (s := _stat(child)) is not None:
                found.append(s)
                stack.append(child)
    return found


TRACKER: Final = Tracker()


class RunCgroup:
    """A cgroup v2 of one run, under ``hodei-<worker pid>`` in the worker's own cgroup."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._holds_us = False  # this process could not leave it: never cgroup.kill it

    @classmethod
    def create(cls, run_id: str) -> RunCgroup | None:
        """A new empty cgroup, or None where this process may not create one."""
        base = _cgroup_base()
        if base is None:
            return None
        path = os.path.join(base, f"run-{run_id}")
        try:
            try:
                os.mkdir(path)
            except FileNotFoundError:  # the base was removed (by the guard of a test)
                os.makedirs(path)
        except OSError as exc:  # this run goes without (cgroup.max.descendants, say)
            logger.warning("no cgroup for this job: cannot create %s: %s", path, exc.strerror)
            return None
        return cls(path)

    @contextlib.contextmanager
    def entered(self) -> Iterator[bool]:
        """Put this process in the cgroup for the duration, so that a child forked meanwhile
        starts in it (Python cannot fork into a cgroup, and moving the child after it has
        started lets it fork first); whether that worked. Hold ``TRACKER.spawning()``."""
        origin = _cgroup_origin()
        if origin is None or not _move(os.getpid(), self.path):
            yield False
            return
        try:
            yield True
        finally:
            if not _move(os.getpid(), origin) and not _move(os.getpid(), origin):
                logger.error("could not leave cgroup %s; no more cgroups per job", self.path)
                self._holds_us = True
                cgroups_disabled()

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def signal(self, sig: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self) -> int:
        """SIGKILL every process in the cgroup; how many there were."""
        if self._holds_us:
            me = os.getpid()
            others = [p for p in self.pids() if p != me]
            for pid in others:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            return len(others)
        return kill_cgroup(self.path)

    def remove(self) -> None:
        remove_cgroup(self.path)


def _move(pid: int, cgroup: str) -> bool:
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    except OSError as exc:
        _cgroups_unavailable(f"cannot move a process into {cgroup}: {exc.strerror or exc}")
        return False
    return True


def kill_cgroup(path: str) -> int:
    """SIGKILL every process of cgroup ``path`` (also used by the orphan guard)."""
    count = 0
    for _ in range(_SWEEP_ROUNDS):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return count
        if not pids:
            return count
        count = max(count, len(pids))
        try:
            # cgroup.kill (Linux 5.14+) also gets processes forked meanwhile.
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
            return count
        except OSError:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    return count


def remove_cgroup(path: str) -> None:
    """Remove an emptied cgroup, waiting a bounded time for its killed processes to go."""
    give_up_at = time.monotonic() + _CGROUP_EMPTY_WAIT_S
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() >= give_up_at:
                logger.warning("could not remove cgroup %s: %s", path, exc.strerror or exc)
                return
        time.sleep(0.01)


_base_lock = threading.Lock()
_base: str | None = None
_origin: str | None = None  # this process's own cgroup, where it returns after a spawn
_base_failed = False


def _cgroup_origin() -> str | None:
    with _base_lock:
        return None if _base_failed else _origin


def _cgroup_base() -> str | None:
    global _base, _origin
    with _base_lock:
        if _base is not None or _base_failed:
            return _base
        own = _own_cgroup_dir()
        if own is None:
            _cgroups_unavailable("no cgroup v2 hierarchy")
            return None
        base = os.path.join(own, f"hodei-{os.getpid()}")
        _remove_stale_bases(own)
        try:
            os.mkdir(base)
        except FileExistsError:
            pass
        except OSError as exc:
            _cgroups_unavailable(f"cannot create {base}: {exc.strerror or exc}")
            return None
        _base, _origin = base, own
        atexit.register(remove_cgroup_base)
        return _base


def _remove_stale_bases(parent: str) -> None:
    """Remove the cgroups of workers that died with their guard (a provider that kills
    a lost worker's whole session): what still runs in them is a dead worker's jobs'."""
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        pid = entry.removeprefix("hodei-")
        if not entry.startswith("hodei-") or not pid.isdigit() or _stat(int(pid)) is not None:
            continue
        stale = os.path.join(parent, entry)
        with contextlib.suppress(OSError):
            for run in os.listdir(stale):
                if run.startswith("run-"):
                    kill_cgroup(os.path.join(stale, run))
                    remove_cgroup(os.path.join(stale, run))
            os.rmdir(stale)
            logger.info("removed the cgroup of a worker that is gone: %s", stale)


def remove_cgroup_base() -> None:
    """Remove this process's cgroup directory (empty once its runs have ended)."""
    with _base_lock:
        if _base is not None:
            with contextlib.suppress(OSError):
                os.rmdir(_base)


def _cgroups_unavailable(why: str) -> None:
    global _base_failed
    if not _base_failed:
        logger.info("no cgroup per job (%s); using the subreaper and sweep", why)
    _base_failed = True


def cgroups_disabled() -> None:
    """Never create cgroups in this process (``HODEI_JOB_CGROUP=off``)."""
    global _base_failed
    with _base_lock:
        _base_failed = True


def _own_cgroup_dir() -> str | None:
    """This process's cgroup v2 directory, if the unified hierarchy is mounted."""
    if sys.platform != "linux":
        return None
    try:
        with open("/proc/self/cgroup") as f:
            own = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split() for ln in f]
    except OSError:
        return None
    if own is None:
        return None
    for fields in mounts:
        sep = fields.index("-") if "-" in fields else -1
        if sep < 0 or fields[sep + 1] != "cgroup2":
            continue
        root, mount_point = fields[3], fields[4]
        rel = os.path.relpath(own, root)
        if rel.startswith(".."):
            continue
        return os.path.normpath(os.path.join(mount_point, rel))
    return None
