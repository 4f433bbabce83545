"""Flower in a real browser: `hodei flower` behind basic auth, a real worker and job, and
headless Chromium reading Flower's tasks page. Saves the screenshot the docs show."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from hodei import JobState
from hodei.sdk import Client
from hodei.settings import Settings
from tests.integration.test_observability_metrics import free_port, http_get
from tests.services import unavailable
from tests.support import REPO, hodei_env, terminate, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

USER, PASSWORD = "hodei", "flower-test-password"
# The docs' picture is refreshed only on request: a test run leaves the work tree clean.
SCREENSHOT = REPO / "docs" / "img" / "flower.png"
UPDATE_SCREENSHOT = bool(os.environ.get("HODEI_UPDATE_SCREENSHOTS"))


def chromium() -> str:
    """Debian's chromium; skip without it on a laptop, fail in CI."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable(
        "chromium is not installed: apt-get install -y chromium",
        in_ci="CI must run the browser tests",
    )


def _authorized_get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@contextlib.contextmanager
def flower(settings: Settings) -> Iterator[str]:
    """`hodei flower` as a subprocess; yields its base URL once it answers."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a pipe nobody reads would fill up
        yield from _flower(settings, log)


def _flower(settings: Settings, log: IO[str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hodei", "flower", "--port", str(port)],
        env=hodei_env(settings, HODEI_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}"),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"hodei flower exited: {log.read()[-4000:]}")
        return _authorized_get(base + "/api/workers")[0] == 200

    try:
        wait_for(up, timeout=30, message="Flower to answer")
        yield base
    finally:
        terminate(process)


def _browser(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Let the page's own requests (the tasks table is loaded by AJAX) finish first.
            "--virtual-time-budget=10000",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_flower_tasks_page_shows_the_job(
    pg_client: Client, pg_settings: Settings, tmp_path: Path
) -> None:
    chromium()
    with flower(pg_settings) as base:
        assert http_get(base + "/tasks")[0] == 401  # basic auth is on
        # The worker starts after Flower, so Flower sees all of its task events.
        job = pg_client.submit("echo from flower", name="nightly-report")
        assert pg_client.wait(job.id, timeout=90).state is JobState.SUCCEEDED

        def flower_knows() -> bool:
            status, body = _authorized_get(base + "/api/tasks")
            tasks = json.loads(body).values() if status == 200 else []
            # SUCCESS comes from the worker's batched events (hodei/queueing/task_events.py).
            return any(
                str(job.id) in str(t.get("args")) and t.get("state") == "SUCCESS" for t in tasks
            )

        wait_for(flower_knows, timeout=30, message="Flower to receive the task's events")

        page = base.replace("http://", f"http://{USER}:{PASSWORD}@") + "/tasks"
        dom = _browser(page, tmp_path / "profile", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "hodei.run_job" in dom.stdout
        assert "nightly-report" in dom.stdout
        assert str(job.id) in dom.stdout

        shot = _browser(
            page,
            tmp_path / "profile",
            "--hide-scrollbars",
            "--window-size=1600,520",
            f"--screenshot={tmp_path / 'flower.png'}",
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert (tmp_path / "flower.png").stat().st_size > 10_000
        if UPDATE_SCREENSHOT:
            shutil.copyfile(tmp_path / "flower.png", SCREENSHOT)
