"""The local provider: workers are detached ``hodei worker start`` processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from hodei.domain.records import Worker
from hodei.errors import ProviderUnavailable
from hodei.services.ports import LaunchRequest
from hodei.settings import Settings

logger = logging.getLogger(__name__)


class LocalLauncher:
    """Starts workers as processes on this machine, in their own session."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def launch(self, request: LaunchRequest) -> str:
        log_dir = self._settings.home.resolve() / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self._settings.child_environment(),
            **request.environment,
            "HODEI_OTP_TOKEN": request.token,
            "HODEI_WORKER_ID": str(request.worker_id),
        }
        command = [sys.executable, "-m", "hodei", "worker", "start", "--queue", request.queue]
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
        return f"pid:{process.pid}"

    def destroy(self, worker: Worker) -> None:
        pid = _pid(worker.infra_ref)
        # A pid can be reused after the worker died: only signal the very same worker.
        if pid is None or not _is_worker_process(pid, worker):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            logger.warning("cannot kill worker %s (pid %d): not ours", worker.id, pid)


def _is_worker_process(pid: int, worker: Worker) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return f"HODEI_WORKER_ID={worker.id}".encode() in environ.read().split(b"\0")
    except OSError:
        return False


def _pid(infra_ref: str | None) -> int | None:
    if not infra_ref or not infra_ref.startswith("pid:"):
        return None
    try:
        return int(infra_ref.split(":", 1)[1].split("@", 1)[0])
    except ValueError:
        return None
