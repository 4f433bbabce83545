"""The orphan guard kills registered job groups when its owner goes away."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from hodei.runtime import proctree
from hodei.runtime.orphan_guard import OrphanGuard
from tests.services import unavailable
from tests.support import kill_survivors, process_group_alive, survivors, wait_for


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


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "marker"])
def test_processes_that_left_the_group_die_with_the_guard_s_owner(use_cgroup: bool) -> None:
    """What left the job's group is found by its cgroup, or else by its run marker."""
    tag = f"{os.getpid()}{int(use_cgroup)}7"
    run_id = f"guard-test-{tag}"
    cgroup = proctree.RunCgroup.create(run_id) if use_cgroup else None
    if use_cgroup and cgroup is None:
        unavailable("this process may not create a cgroup v2 here")
    with proctree.TRACKER.spawning(), cgroup.entered() if cgroup else contextlib.nullcontext():
        job = subprocess.Popen(
            # (a variable, so that the shell's own argv does not hold the markers)
            [
                "/bin/sh",
                "-c",
                f"t=1000.{tag}; setsid sleep ${{t}}1 & env -i setsid sleep ${{t}}2 & wait",
            ],
            process_group=0,
            env={**os.environ, proctree.RUN_ID_ENV: run_id},
        )
    guard = OrphanGuard()
    try:
        wait_for(lambda: len(survivors(tag)) == 2, timeout=5, message="both started")
        guard.watch(job.pid, run_id, cgroup.path if cgroup else None)
        guard.close()
        assert job.wait(timeout=5) == -9
        # Without a cgroup only the marked process is found (the other has no environment).
        wanted = [] if cgroup is not None else [f"sleep 1000.{tag}2"]
        wait_for(
            lambda: [s.split(": ", 1)[1] for s in survivors(tag)] == wanted,
            timeout=5,
            message=f"survivors {wanted}",
        )
        if cgroup is not None:
            wait_for(lambda: not os.path.exists(cgroup.path), timeout=5, message="cgroup gone")
    finally:
        kill_survivors(tag)
        job.kill()
        job.wait()


def test_the_next_worker_cleans_up_after_a_worker_that_died_with_its_guard() -> None:
    """A provider that kills a lost worker's whole session takes its guard too: the
    cgroups it leaves, and what still runs in them, go when a worker next makes one."""
    own = proctree._own_cgroup_dir()
    probe = proctree.RunCgroup.create(f"probe-{os.getpid()}")
    if own is None or probe is None:
        unavailable("this process may not create a cgroup v2 here")
    probe.remove()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(own, f"hodei-{dead.pid}")
    os.makedirs(os.path.join(stale, "run-left"))
    tag = f"{os.getpid()}9"
    left = subprocess.Popen(["sleep", f"1000.{tag}"], start_new_session=True)
    try:
        with open(os.path.join(stale, "run-left", "cgroup.procs"), "w") as procs:
            procs.write(str(left.pid))
        proctree._remove_stale_bases(own)
        assert left.wait(timeout=5) == -9
        assert not os.path.exists(stale)
    finally:
        kill_survivors(tag)
        left.wait()
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(stale, "run-left"))
            os.rmdir(stale)
