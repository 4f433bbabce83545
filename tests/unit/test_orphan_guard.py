"""The orphan guard kills registered job groups when its owner goes away."""

from __future__ import annotations

import subprocess

from hodei.runtime.orphan_guard import OrphanGuard
from tests.support import process_group_alive, wait_for


def _job_group() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", "sleep 30 & wait"], process_group=0)


def test_groups_still_registered_when_the_pipe_closes_are_killed() -> None:
    guard = OrphanGuard()
    watched, released = _job_group(), _job_group()
    try:
        guard.watch(watched.pid)
        guard.watch(released.pid)
        guard.release(released.pid)
        guard.close()  # the same end of file the kernel gives when the worker dies

        assert watched.wait(timeout=5) == -9
        wait_for(lambda: not process_group_alive(watched.pid), timeout=5, message="group gone")
        assert released.poll() is None
    finally:
        for proc in (watched, released):
            proc.kill()
            proc.wait()


def test_a_vanished_guard_leaves_the_caller_working() -> None:
    guard = OrphanGuard()
    guard._proc.kill()
    guard._proc.wait()
    guard.watch(1)  # logs a warning instead of raising
    guard.release(1)
    guard.close()
