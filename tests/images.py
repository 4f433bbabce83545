"""hodei's own images for the real-image tests, and what their Dockerfiles declare.

`.ci/build-images` builds the images from a Debian base it makes itself (no registry is
reachable here); `.ci/run` calls it before the tests. Locally, a test that needs them
skips until that script has run; under CI it fails.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import unavailable

WORKER_IMAGE = "hodei-worker:ci"
CONTROL_PLANE_IMAGE = "hodei:ci"
POSTGRES_IMAGE = "hodei-ci/postgres:15"
REDIS_IMAGE = "hodei-ci/redis:7"
ALL = (WORKER_IMAGE, CONTROL_PLANE_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE)


def require_images(client: Any, *tags: str) -> None:
    """Skip (fail in CI) unless `.ci/build-images` has built ``tags`` on this engine."""
    import docker

    missing = []
    for tag in tags or ALL:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            missing.append(tag)
    if missing:
        unavailable(
            f"images {', '.join(missing)} are not built: run .ci/build-images",
            in_ci="CI is set, and .ci/run builds them",
        )


@dataclass
class Stage:
    """The final stage of a Dockerfile: what a container of the image runs, and how."""

    froms: list[str] = field(default_factory=list)  # every stage's FROM
    args: dict[str, str] = field(default_factory=dict)  # ARG NAME=default, before any FROM
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = "root"


def dockerfile(path: Path) -> Stage:
    """Parse the instructions that matter here (continuation lines joined)."""
    text = path.read_text().replace("\\\n", " ")
    stage = Stage()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage.froms.append(rest.split()[0])
            stage.entrypoint, stage.cmd, stage.user = [], [], "root"
        elif word == "ARG" and not stage.froms:
            name, _, default = rest.partition("=")
            stage.args[name.strip()] = default.strip()
        elif word in ("ENTRYPOINT", "CMD"):
            form = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            if word == "ENTRYPOINT":
                stage.entrypoint, stage.cmd = form, []  # Docker resets CMD here too
            else:
                stage.cmd = form
        elif word == "USER":
            stage.user = rest.strip()
    return stage


def argv(service: dict[str, Any], image: Stage) -> list[str]:
    """What a compose service's container runs: its entrypoint (or the image's) followed
    by its command (or, unless it replaced the entrypoint, the image's CMD)."""

    def words(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else list(value)

    if "entrypoint" in service:
        return words(service["entrypoint"]) + words(service.get("command", []))
    return image.entrypoint + words(service.get("command", image.cmd))
