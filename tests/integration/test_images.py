"""hodei's Dockerfiles and Kubernetes control plane, read and (marker `docker`) built:
both Dockerfiles take their base as a build argument with the official image as the
default, the control-plane image can carry the Kubernetes client and the manifest runs
it (not the worker image, which has neither client), and the images CI builds from a
local base (`.ci/build-images`) really have what they claim."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.docker_engine import engine
from tests.images import CONTROL_PLANE_IMAGE, WORKER_IMAGE, dockerfile, require_images
from tests.support import REPO

ROOT = REPO / "Dockerfile"
WORKER = REPO / "workers" / "Dockerfile"
CONTROL_PLANE = REPO / "workers" / "kubernetes" / "control-plane.yaml"


@pytest.mark.parametrize("path", [ROOT, WORKER], ids=["root", "worker"])
def test_the_base_image_is_a_build_argument_defaulting_to_official_python(path: Any) -> None:
    stage = dockerfile(path)
    assert re.fullmatch(r"python:3\.1[1-9]-slim", stage.args.get("BASE_IMAGE", "")), stage.args
    assert stage.froms and all(f == "${BASE_IMAGE}" for f in stage.froms), stage.froms
    assert stage.user not in ("root", "0")


def test_the_root_image_takes_its_extras_as_a_build_argument() -> None:
    text = ROOT.read_text()
    assert re.search(r"^ARG HODEI_EXTRAS=docker$", text, re.M)
    assert '"${HODEI_EXTRAS}"' in text


def _scheduler_container() -> dict[str, Any]:
    (deployment,) = [d for d in yaml.safe_load_all(CONTROL_PLANE.read_text()) if d]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["hodei", "scheduler"]
    return dict(container)


def test_the_kubernetes_control_plane_runs_the_control_plane_image() -> None:
    """`hodei scheduler` health-checks its Kubernetes provider with the kubernetes
    client: in the worker image that crashes with "No module named 'kubernetes'"."""
    image = _scheduler_container()["image"]
    worker_builds = re.findall(
        r"docker build -f workers/Dockerfile -t (\S+)", (REPO / "docs" / "providers.md").read_text()
    )
    assert worker_builds and image not in worker_builds
    # The manifest says how its image is built: the root Dockerfile with both clients.
    header = " ".join(
        line.lstrip("# ").rstrip("\\ ")
        for line in CONTROL_PLANE.read_text().splitlines()
        if line.startswith("#")
    )
    build = re.search(r"docker build (.*?) \.(\s|$)", header)
    assert build, header
    assert "-f " not in build.group(1)
    assert f"-t {image}" in build.group(1)
    assert "--build-arg HODEI_EXTRAS=docker,kubernetes" in build.group(1)


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = engine()
    require_images(client, WORKER_IMAGE, CONTROL_PLANE_IMAGE)
    yield client
    client.close()


def _run(client: Any, image: str, command: list[str], **options: Any) -> str:
    output: bytes = client.containers.run(
        image, command, remove=True, network_mode="none", **options
    )
    return output.decode()


@pytest.mark.docker
def test_the_control_plane_image_has_both_provider_clients(docker_client: Any) -> None:
    probe = "import docker, kubernetes, hodei.providers.kubernetes, os; print(os.getuid())"
    assert _run(docker_client, CONTROL_PLANE_IMAGE, ["python", "-c", probe]).strip() == "10001"
    assert "scheduler" in _run(docker_client, CONTROL_PLANE_IMAGE, ["hodei", "--help"])


@pytest.mark.docker
def test_the_worker_image_runs_hodei_worker_start_as_a_non_root_user(
    docker_client: Any,
) -> None:
    assert "bootstrap token" in _run(docker_client, WORKER_IMAGE, ["--help"])
    uid = _run(docker_client, WORKER_IMAGE, [], entrypoint=["id", "-u"]).strip()
    assert uid == "10001"
    # Neither provider client: workers run jobs, they launch nothing.
    probe = "import importlib.util as u; print(u.find_spec('docker'), u.find_spec('kubernetes'))"
    assert _run(docker_client, WORKER_IMAGE, ["-c", probe], entrypoint=["python"]).strip() == (
        "None None"
    )


@pytest.mark.docker
def test_the_control_plane_image_carries_no_layer_a_later_step_deletes(
    docker_client: Any,
) -> None:
    """Only the venv is copied in bulk: hodei's own wheel (under 1 MB) is the one file a
    later step removes. (The old Dockerfile copied ~30 MB of /wheels, then deleted them.)"""
    history = docker_client.images.get(CONTROL_PLANE_IMAGE).history()
    copies = [h for h in history if " COPY " in h["CreatedBy"]]
    big = [h["CreatedBy"].split(" in ")[-1].strip() for h in copies if h["Size"] > 1_000_000]
    assert big == ["/opt/hodei"], big
    (wheel,) = [h for h in copies if h["CreatedBy"].strip().endswith("in /tmp/dist")]
    assert wheel["Size"] < 1_000_000
