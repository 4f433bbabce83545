"""The compose stack, up for real (issue 20): compose.yaml with the images
`.ci/build-images` makes and the CI-only override `.ci/compose.ci.yaml` (stand-in
PostgreSQL and Redis). Every service becomes healthy or completes, a job submitted from
the scheduler container runs in a worker container the scheduler launched, /health/ready
answers 200, Flower answers 401 without its password and 200 with it; then it is torn
down, volumes and worker containers included."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.docker_engine import engine
from tests.images import (
    CONTROL_PLANE_IMAGE,
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    WORKER_IMAGE,
    require_images,
)
from tests.integration.test_observability_compose import _compose_command
from tests.services import unavailable
from tests.support import REPO, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "hodei-ci-smoke"
HEALTHY = ("postgres", "redis", "scheduler", "serve", "server", "flower")
COMPLETED = ("migrate", "worker-image", "providers")
FLOWER_AUTH = f"admin:{secrets.token_hex(8)}"


class Stack:
    def __init__(self, docker_client: Any, command: list[str]) -> None:
        self.docker = docker_client
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HODEI_")},
            "COMPOSE_PROJECT_NAME": PROJECT,
            "HODEI_IMAGE": CONTROL_PLANE_IMAGE,
            "HODEI_WORKER_IMAGE": WORKER_IMAGE,
            "HODEI_FLOWER_BASIC_AUTH": FLOWER_AUTH,
            "POSTGRES_PASSWORD": secrets.token_hex(8),
            "DOCKER_GID": str(socket_gid),
        }
        self.base = [*command, "-f", "compose.yaml", "-f", ".ci/compose.ci.yaml"]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def containers(self) -> dict[str, Any]:
        found = self.docker.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
        )
        return {c.labels["com.docker.compose.service"]: c for c in found}

    def workers(self) -> list[Any]:
        """Worker containers the stack's scheduler launched (its `docker` provider)."""
        return [
            c
            for c in self.docker.containers.list(
                all=True, filters={"label": ["hodei.managed=true", "hodei.provider=docker"]}
            )
            if "hodei" in c.attrs["NetworkSettings"]["Networks"]
        ]

    def down(self) -> None:
        for container in self.workers():
            container.remove(force=True)
        self.compose("down", "--volumes", "--remove-orphans", timeout=120)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    command = _compose_command()
    if command is None:
        unavailable("no docker compose here", in_ci="CI is set, and .ci/run installs it")
    docker_client = engine()
    require_images(docker_client, CONTROL_PLANE_IMAGE, WORKER_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE)
    s = Stack(docker_client, command)
    s.down()  # what an interrupted run left behind
    try:
        up = s.compose("up", "--detach", "--no-build")
        assert up.returncode == 0, up.stderr[-3000:]
        yield s
    except BaseException:
        print(s.compose("logs", "--no-color", "--tail", "40").stdout[-8000:])
        raise
    finally:
        s.down()
        docker_client.close()


def _state(container: Any) -> str:
    container.reload()
    state = container.attrs["State"]
    if "Health" in state:
        return str(state["Health"]["Status"])
    return f"{state['Status']} {state['ExitCode']}"


def test_every_service_becomes_healthy_or_completes(stack: Stack) -> None:
    expected = {**dict.fromkeys(HEALTHY, "healthy"), **dict.fromkeys(COMPLETED, "exited 0")}

    def states() -> dict[str, str]:
        return {name: _state(c) for name, c in stack.containers().items()}

    last: dict[str, str] = {}

    def settled() -> bool:
        last.update(states())
        return last == expected

    deadline = time.monotonic() + 120
    while not settled():
        assert time.monotonic() < deadline, f"services did not settle: {last}"
        assert "unhealthy" not in last.values(), last
        time.sleep(1)


def test_a_job_runs_in_a_worker_container_the_scheduler_launched(stack: Stack) -> None:
    test_every_service_becomes_healthy_or_completes(stack)
    probe = "import importlib.util as u; print('docker client:', u.find_spec('docker'))"
    run = stack.compose(
        "exec", "-T", "scheduler", "hodei", "job", "run", "--", f'echo hello; python3 -c "{probe}"'
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-2:] == ["hello", "docker client: None"], run.stdout
    # The worker image (no docker client), in a container on the stack's network.
    (worker,) = stack.workers()
    assert worker.image.tags == [WORKER_IMAGE]


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_health_ready_and_flower_behind_its_password(stack: Stack) -> None:
    test_every_service_becomes_healthy_or_completes(stack)
    # Published on the host's loopback, as an operator reaches them.
    assert _get("http://127.0.0.1:9464/health/ready") == 200
    assert _get("http://127.0.0.1:5555/") == 401
    assert _get("http://127.0.0.1:5555/", auth="admin:wrong") == 401
    wait_for(
        lambda: _get("http://127.0.0.1:5555/", auth=FLOWER_AUTH) == 200,
        timeout=10,
        message="Flower to answer 200 with its password",
    )
