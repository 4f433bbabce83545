"""The local provider: workers are detached ``hodei worker start`` processes."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hodei.domain.records import Worker
from hodei.errors import ProviderUnavailable
from hodei.services.ports.providers import LaunchRequest
from hodei.settings import API_WORKER_OMITS, Settings

logger = logging.getLogger(__name__)


class LocalLauncher:
    """Starts workers as processes on this machine, in their own session."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(self, request: LaunchRequest) -> str:
        log_dir = self._settings.make_home() / "logs"
        log_dir.mkdir(exist_ok=True)
        inherited = dict(os.environ)
        if self._settings.api_mode_workers:
            # An API-mode worker: nothing of the control plane's keys, also not what
            # this process inherited (HODEI_DATABASE_URL exported in its shell).
            for name in API_WORKER_OMITS:
                inherited.pop(name, None)
        env = {
            **inherited,
            **self._settings.worker_environment(),
            **request.environment,
            "HODEI_OTP_TOKEN": request.token,
            "HODEI_WORKER_ID": str(request.worker_id),
        }
        # The worker id in argv (not a secret) is how destroy() tells this worker's process
        # from a reused pid: its environment is unreadable once it runs (runtime/hardening).
        command = [
            *(sys.executable, "-m", "hodei", "worker", "start"),
            *("--queue", request.queue, "--worker-id", str(request.worker_id)),
        ]
        try:
            with open(log_dir / f"{request.worker_name}.log", "ab") as log:
                process = subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the CLI that launched it
                    close_fds=True,
                )
        except OSError as exc:
            raise ProviderUnavailable(f"could not start a local worker: {exc}") from exc
        logger.info(
            "started local worker %s as pid %d",
            request.worker_id,
            process.pid,
            extra={"worker_id": str(request.worker_id)},
        )
        # The host too: only a process on the same machine can tell whether it still runs.
        return f"pid:{process.pid}@{socket.gethostname()}"

    def destroy(self, worker: Worker) -> None:
        """Kill the worker and every job process it left behind.

        The worker leads its own session and each job runs in a process group inside
        it, so a SIGKILLed worker's jobs are found by session id and never finish
        (and so never run twice) after the reaper has requeued them.
        """
        pid = _pid(worker.infra_ref)
        if pid is None:
            return
        # A pid can be reused after the worker died: only signal the very same worker.
        if _is_worker_process(pid, worker):
            _signal(functools.partial(os.kill, pid, signal.SIGKILL))
        for pgid in _job_groups_in_session(pid):
            logger.warning(
                "killing job process group %d left by worker %s",
                pgid,
                worker.id,
                extra={"worker_id": str(worker.id)},
            )
            _signal(functools.partial(os.killpg, pgid, signal.SIGKILL))

    def exited(self, worker: Worker) -> str | None:
        """Why the worker's process is gone, if it was started on this machine and no
        longer runs (a zombie counts as gone); None while it runs or elsewhere."""
        pid, host = _pid(worker.infra_ref), _host(worker.infra_ref)
        if pid is None or host != socket.gethostname() or _is_worker_process(pid, worker):
            return None
        status = _reap(pid)
        how = "" if status is None else f" ({status})"
        log = self._settings.home / "logs" / f"{worker.name}.log"
        return f"its process (pid {pid}) ended before it registered{how}; see {log}"


def _reap(pid: int) -> str | None:
    """How ``pid`` ended, if it is this process's child (the CLI that launched it is
    still running): reaped, so it leaves no zombie."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done != pid:
        return None
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _signal(send: Callable[[], None]) -> None:
    try:
        send()
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        logger.warning("cannot signal a worker process: %s", exc)


def _job_groups_in_session(session_id: int) -> set[int]:
    """Process groups of hodei jobs (they carry HODEI_JOB_ID) in ``session_id``."""
    groups = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session_id or int(fields[2]) == session_id:
                continue
            if b"HODEI_JOB_ID=" in (entry / "environ").read_bytes():
                groups.add(int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return groups


def _is_worker_process(pid: int, worker: Worker) -> bool:
    # cmdline, not environ: any user may read it, also of an undumpable process.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
    except OSError:
        return False
    marker = [b"--worker-id", str(worker.id).encode()]
    return any(argv[i : i + 2] == marker for i in range(len(argv) - 1))


def _host(infra_ref: str | None) -> str | None:
    if not infra_ref or "@" not in infra_ref:
        return None
    return infra_ref.split("@", 1)[1]


def _pid(infra_ref: str | None) -> int | None:
    if not infra_ref or not infra_ref.startswith("pid:"):
        return None
    try:
        return int(infra_ref.split(":", 1)[1].split("@", 1)[0])
    except ValueError:
        return None
