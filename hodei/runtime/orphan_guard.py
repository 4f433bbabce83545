"""Make a job's process group die with its worker, however the worker dies.

A SIGKILLed worker (``kill -9``, the OOM killer) cannot clean up, and its jobs' process
groups would run on as orphans: their commands finish after the reaper has requeued them,
so they complete twice. ``PR_SET_PDEATHSIG`` does not cover this, as it reaches only the
direct child (``/bin/sh``), not what the shell started.

So every worker starts a small guard process and keeps the write end of a pipe to it.
The worker tells the guard each job group it starts and ends. When the pipe reaches end
of file, which the kernel guarantees when the worker exits in any way, the guard SIGKILLs
the groups still open and exits. The guard is this file run as a script (``python -I``),
so it loads only the standard library.
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
            # Its own group, so a Ctrl-C or a job-group kill aimed at the worker's group
            # does not take the guard away before the worker has finished.
            process_group=0,
        )
        self._pipe: IO[bytes] | None = self._proc.stdin
        self.pid = self._proc.pid

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before :meth:`release`."""
        self._send(f"+{pgid}\n")

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
    """The guard process: track groups from stdin; at end of file, kill the ones left."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    with contextlib.suppress(OSError):
        for raw in sys.stdin.buffer:
            line = raw.strip()
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    _guard_main()
