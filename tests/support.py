"""Helpers for tests that run real hodei processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hodei.settings import Settings

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


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a worker and the session it leads (its jobs' process groups too)."""
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
