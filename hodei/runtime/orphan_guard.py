"""Make a job's processes die with their worker, however the worker dies.

A SIGKILLed worker (``kill -9``, the OOM killer) cannot clean up, and its jobs' process
groups would run on as orphans: their commands finish after the reaper has requeued them,
so they complete twice. ``PR_SET_PDEATHSIG`` does not cover this, as it reaches only the
direct child (``/bin/sh``), not what the shell started.

So every worker starts a small guard process and keeps the write end of a pipe to it.
The worker tells the guard each job it starts and ends: its process group, its run marker
and its cgroup if it has one. When the pipe reaches end of file, which the kernel
guarantees when the worker exits in any way, the guard SIGKILLs the groups still open, the
processes of their cgroups and every process that carries one of their markers (those
that left the group; with the worker gone they are init's), and exits. The guard is this
file run as a script (``python -I``), so it loads only the standard library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO

if __package__:
    from hodei.runtime import hardening, proctree
else:  # run as the guard script: load the sibling module alone, not hodei's package
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import hardening  # type: ignore[import-not-found,no-redef]
    import proctree  # type: ignore[import-not-found,no-redef]

logger = logging.getLogger(__name__)


class OrphanGuard:
    """The worker's side: register job process groups with the guard process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            # Nothing of the worker's environment: the guard needs none of its secrets.
            env={},
            # Its own group, so a Ctrl-C or a job-group kill aimed at the worker's group
            # does not take the guard away before the worker has finished.
            process_group=0,
        )
        self._pipe: IO[bytes] | None = self._proc.stdin
        self.pid = self._proc.pid
        proctree.TRACKER.add_helper(self.pid)  # a child of the worker, but no job's

    def watch(self, pgid: int, run_id: str = "", cgroup: str | None = None) -> None:
        """Kill group ``pgid``, cgroup ``cgroup`` and the processes marked ``run_id`` if
        this process dies before :meth:`release`."""
        self._send(f"+{pgid} {run_id or '-'} {cgroup or '-'}\n")

    def release(self, pgid: int) -> None:
        """Group ``pgid`` has ended (its leader is reaped); forget it."""
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Stop the guard; the groups still registered are killed."""
        with self._lock:
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    self._pipe.close()
                self._pipe = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)

    def _send(self, line: str) -> None:
        with self._lock:
            if self._pipe is None:
                return
            try:
                self._pipe.write(line.encode())
                self._pipe.flush()
            except OSError:
                # The guard is gone (killed by hand); jobs still run, just unguarded.
                logger.warning("the orphan guard (pid %d) is gone; jobs are unguarded", self.pid)
                self._pipe = None


def _guard_main() -> None:
    """The guard process: track jobs from stdin; at end of file, kill the ones left."""
    hardening.make_undumpable()  # a job must not stop it (ptrace) nor read its pipe
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    jobs: dict[int, tuple[str, str]] = {}  # pgid -> (run id, cgroup path), "-" for none
    bases: set[str] = set()  # the worker's cgroup directories, removed at the end
    with contextlib.suppress(OSError):
        for raw in sys.stdin.buffer:
            line = raw.decode(errors="replace").rstrip("\n")
            if line[:1] == "+":
                pgid, run_id, cgroup = ([*line[1:].split(" ", 2), "-", "-"])[:3]
                jobs[int(pgid)] = (run_id, cgroup)
                if cgroup != "-":
                    bases.add(os.path.dirname(cgroup))
            elif line[:1] == "-":
                jobs.pop(int(line[1:]), None)
    for pgid in jobs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    cgroups = [cg for _, cg in jobs.values() if cg != "-"]
    for cgroup in cgroups:
        proctree.kill_cgroup(cgroup)
    markers = {run_id for run_id, _ in jobs.values() if run_id != "-"}
    if markers:
        _kill_marked(markers)
    for cgroup in cgroups:
        proctree.remove_cgroup(cgroup)
    for base in bases:
        with contextlib.suppress(OSError):  # empty once its runs' are gone
            os.rmdir(base)


def _kill_marked(markers: set[str]) -> None:
    """SIGKILL every process whose run marker is one of ``markers``, until none is left."""
    for _ in range(10):
        found = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit() and proctree.run_marker(int(entry)) in markers:
                found += 1
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)
        if not found:
            return


if __name__ == "__main__":
    _guard_main()
