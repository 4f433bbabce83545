"""compose.yaml validates (`docker compose config`, or docker-compose v1, when installed),
has the services, healthchecks and start order operators rely on, and every hodei
command it runs parses with the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.images import argv, dockerfile
from tests.services import unavailable
from tests.support import REPO

COMPOSE = REPO / "compose.yaml"
ENV = {**os.environ, "HODEI_FLOWER_BASIC_AUTH": "admin:compose-test"}
LONG_RUNNING = ("postgres", "redis", "scheduler", "serve", "server", "flower")


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) if it answers, else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_config_passes() -> None:
    command = _compose_command()
    if command is None:
        unavailable("no docker compose here; the structural tests below still run")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_flower_without_a_password() -> None:
    command = _compose_command()
    if command is None:
        unavailable("no docker compose here")
    env = {k: v for k, v in ENV.items() if k != "HODEI_FLOWER_BASIC_AUTH"}
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert result.returncode != 0
    assert "HODEI_FLOWER_BASIC_AUTH" in result.stderr


def test_services_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "scheduler", "serve", "flower"}
    for name in LONG_RUNNING:
        assert "test" in services[name].get("healthcheck", {}), f"{name} has no healthcheck"

    def needs(service: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[service]["depends_on"].items()}

    assert needs("migrate") == {"postgres": "service_healthy"}
    assert services["migrate"]["command"] == ["hodei", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert needs("scheduler")["redis"] == "service_healthy"
    assert needs("scheduler")["providers"] == "service_completed_successfully"
    assert needs("providers")["migrate"] == "service_completed_successfully"
    assert needs("serve")["migrate"] == "service_completed_successfully"
    assert needs("flower")["redis"] == "service_healthy"
    # The Docker provider drives the host's engine through its socket.
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["scheduler"]["volumes"]
    assert '"network_mode": "hodei"' in " ".join(services["providers"]["command"])
    assert compose["networks"]["hodei"]["name"] == "hodei"
    # Consoles are published on the host's loopback only, and Flower needs a password.
    for name in ("serve", "flower"):
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"])
    assert ":?" in services["flower"]["environment"]["HODEI_FLOWER_BASIC_AUTH"]


HODEI_CONTAINERS = ["migrate", "worker-image", "scheduler", "serve", "server", "flower"]


@pytest.mark.parametrize("service", HODEI_CONTAINERS)
def test_each_hodei_container_runs_a_command_that_parses(
    compose: dict[str, Any], service: str
) -> None:
    """What the container really runs: the image's ENTRYPOINT, unless the service
    replaces it, followed by the command (a `command` under the worker image's
    `hodei worker start` entrypoint would be appended to it)."""
    spec = compose["services"][service]
    command = argv(spec, dockerfile(REPO / spec["build"]["dockerfile"]))
    assert command[0] == "hodei", command
    # --help after the real arguments: click rejects an unknown option before printing help.
    result = subprocess.run(
        [sys.executable, "-m", "hodei", *command[1:], "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{service} runs {command}: {result.stderr}"


def test_every_service_built_here_is_checked(compose: dict[str, Any]) -> None:
    built = {name for name, spec in compose["services"].items() if "build" in spec}
    # `providers` runs `sh -c`: test_the_provider_setup_uses_real_options covers it.
    assert built == {*HODEI_CONTAINERS, "providers"}


def test_the_images_are_named_once(compose: dict[str, Any]) -> None:
    """The worker image the stack builds is the one its docker provider runs."""
    services = compose["services"]
    worker_image = services["worker-image"]["image"]
    assert f'"image": "{worker_image}"' in " ".join(services["providers"]["command"])
    assert '"pull_policy": "never"' in " ".join(services["providers"]["command"])


def test_the_provider_setup_uses_real_options(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["providers"]["command"])
    for words in (
        ["provider", "show", "docker"],
        ["provider", "add", "docker", "--type", "docker", "--priority", "100"],
        ["provider", "add", "docker", "--type", "docker", "--max-workers", "4"],
        ["provider", "add", "docker", "--type", "docker", "--config", "{}"],
        ["provider", "disable", "local"],
    ):
        assert f"hodei {words[0]} {words[1]}" in script
        assert all(flag in script for flag in words if flag.startswith("--"))
        result = subprocess.run(
            [sys.executable, "-m", "hodei", *words, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"hodei {' '.join(words)}: {result.stderr}"


def test_the_control_plane_image_runs_as_a_non_root_user() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
