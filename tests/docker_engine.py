"""A real Docker engine for the ``docker`` tests, and a worker image that needs no registry.

No registry is reachable here, so the image is ``docker import``-ed from a tiny root
filesystem (a few directories, /etc/passwd and the usual symlinks). The container runs
this machine's Python and hodei virtualenv through read-only bind mounts, with the
host's network, so it reaches PostgreSQL and Redis on 127.0.0.1.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from tests.services import unavailable
from tests.support import REPO

TEST_IMAGE = "hodei-test-rootfs:1"
_started: list[bool] = []


def engine() -> Any:
    """A docker client for a working engine; skip (fail in CI) when none can start."""
    import docker

    problem = _ping()
    if problem and not _started:
        _started.append(True)
        script = REPO / ".ci" / "start-dockerd"
        run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
        problem = _ping() and f"{problem}; .ci/start-dockerd said: {run.stdout}{run.stderr}"
    if problem:
        unavailable(
            f"no Docker engine: {problem.strip()}", in_ci="CI is set, and .ci/run starts one"
        )
    return docker.from_env(timeout=60)


def _ping() -> str:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return ""
    except Exception as exc:
        return str(exc).splitlines()[0]


def build_test_image(client: Any) -> str:
    """Import the tiny root filesystem once per engine; returns its tag."""
    import docker

    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repository, tag = TEST_IMAGE.split(":")
    client.api.import_image_from_data(_rootfs_tar(), repository=repository, tag=tag)
    return TEST_IMAGE


def _rootfs_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("etc", "tmp", "proc", "sys", "dev", "usr", "root", "work", "opt"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for link, target in (
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
        ):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


CONTAINER_PREFIX = "/opt/hodei-test-env"


def container_python() -> str:
    """This test environment's interpreter, as a container of :func:`worker_config` (and
    any job in it, whatever its uid) runs it."""
    return str(Path(CONTAINER_PREFIX) / Path(sys.executable).relative_to(sys.prefix))


def worker_config(image: str, **extra: Any) -> dict[str, Any]:
    """A docker provider config whose containers run this checkout's hodei."""
    # The test environment goes in at a path of its own: where it lies on the host (tox's
    # .tox/, mode 0700, inside the checkout) a worker running as another uid could not
    # reach it. Python finds the venv by the path it is started from.
    prefix = CONTAINER_PREFIX
    mounts = {
        "/usr": "/usr",
        sys.base_prefix: sys.base_prefix,
        sys.prefix: prefix,
        str(REPO): str(REPO),
    }
    volumes = {host: f"{target}:ro" for host, target in mounts.items() if Path(host).exists()}
    return {
        "image": image,
        "command": [container_python(), "-m", "hodei", "worker", "start"],
        "network_mode": "host",
        "volumes": volumes,
        "pull_policy": "never",
        **extra,
    }
