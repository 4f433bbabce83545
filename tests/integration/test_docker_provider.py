"""The Docker provider against a real engine (issue 4): a job on a docker provider runs
in a container that is then removed; a missing image fails fast; orphans are removed;
a killed container shows on the job's timeline. Most tests run this checkout's hodei in
a tiny image through bind mounts; one runs the real worker image (workers/Dockerfile,
built by .ci/build-images) as a provider would in production."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hodei import JobState
from hodei.domain.records import Job, Worker
from hodei.domain.states import LAUNCHING_REF, WorkerState
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.ports.store import EventQuery
from hodei.settings import Settings
from tests.docker_engine import build_test_image, container_python, engine, worker_config
from tests.images import WORKER_IMAGE, require_images
from tests.support import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = engine()
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(docker_client: Any) -> str:
    return build_test_image(docker_client)


@pytest.fixture
def client(pg_settings: Settings, docker_client: Any) -> Iterator[Client]:
    settings = dataclasses.replace(pg_settings, worker_idle_timeout_s=2.0, worker_lost_requeues=0)
    c = Client.from_env(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    yield c
    # Worker pids live in the containers' pid namespaces: remove the containers instead.
    for container in _containers(docker_client, c):
        container.remove(force=True)
    c.close()


def _containers(docker_client: Any, c: Client) -> list[Any]:
    names = [v.provider.name for v in c.providers() if v.provider.provider_type == "docker"]
    found = []
    for name in names:
        found += docker_client.containers.list(
            all=True, filters={"label": ["hodei.managed=true", f"hodei.provider={name}"]}
        )
    return found


def _provider_containers(docker_client: Any, name: str) -> list[Any]:
    return docker_client.containers.list(
        all=True, filters={"label": ["hodei.managed=true", f"hodei.provider={name}"]}
    )


def _reconcile(c: Client) -> dict[str, Any]:
    return TASKS["reconcile_providers"](c.container)


def _events(c: Client, aggregate_id: Any, kind: str) -> list[Any]:
    with c.container.store.transaction() as tx:
        return tx.events.search(EventQuery(aggregate_ids=[aggregate_id], event_types=[kind]))


def test_a_job_runs_in_a_container_that_is_then_removed(
    client: Client, docker_client: Any, image: str
) -> None:
    client.add_provider(
        "dock",
        "docker",
        config=worker_config(image),
        priority=10,
        labels={"runtime": "docker"},
        max_workers=1,
    )
    job = client.submit("echo from-container; wc -l < /etc/passwd", labels={"runtime": "docker"})

    done = client.wait(job.id, timeout=90)

    assert done.state is JobState.SUCCEEDED, done.error
    # The tiny root filesystem has a one-line /etc/passwd: the job ran in the container.
    assert [line.line.strip() for line in client.logs(job.id)] == ["from-container", "1"]
    queued = next(e for e in client.timeline(job.id) if e.event_type == "JobQueued")
    assert queued.payload["provider"] == "dock"
    (container,) = _provider_containers(docker_client, "dock")
    assert container.name == f"hodei-worker-{done.worker_id}"
    assert container.labels["hodei.worker_id"] == str(done.worker_id)
    # The worker idles out, its container exits 0, and reconciliation removes it.
    wait_for(
        lambda: _reconcile(client) and not _provider_containers(docker_client, "dock"),
        timeout=60,
        interval=0.5,
        message="the container to be removed",
    )
    exited = _events(client, done.worker_id, "InfrastructureEvent")
    assert [(e.payload["kind"], e.payload["exit_code"]) for e in exited] == [("exited", 0)]
    with client.container.store.transaction() as tx:
        assert tx.workers.get(done.worker_id).state.value == "TERMINATED"  # type: ignore[union-attr]


def test_a_job_runs_in_the_real_worker_image(client: Client, docker_client: Any) -> None:
    """`hodei worker start` from workers/Dockerfile, with nothing mounted: it registers
    with the token the provisioner gave it, runs the job as uid 10001 with the image's
    hodei, idles out, and its container is removed."""
    require_images(docker_client, WORKER_IMAGE)
    # Host networking: the image reaches this machine's PostgreSQL and Redis on 127.0.0.1.
    config = {"image": WORKER_IMAGE, "network_mode": "host", "pull_policy": "never"}
    client.add_provider("img", "docker", config=config, priority=10, max_workers=1)
    job = client.submit(
        "echo from-the-image; id -u; python3 -c 'import hodei; print(hodei.__file__)'",
        provider="img",
    )

    done = client.wait(job.id, timeout=90)

    assert done.state is JobState.SUCCEEDED, done.error
    lines = [line.line.strip() for line in client.logs(job.id)]
    assert lines[:2] == ["from-the-image", "10001"]
    assert lines[2].startswith("/opt/hodei/lib/python3"), lines
    (container,) = _provider_containers(docker_client, "img")
    assert container.image.tags == [WORKER_IMAGE]
    assert container.labels["hodei.worker_id"] == str(done.worker_id)
    # It registered with its single-use token (the provisioner's worker row, not a new one).
    registered = _events(client, done.worker_id, "WorkerRegistered")
    assert len(registered) == 1
    wait_for(
        lambda: _reconcile(client) and not _provider_containers(docker_client, "img"),
        timeout=60,
        interval=0.5,
        message="the idle worker's container to be removed",
    )
    exited = _events(client, done.worker_id, "InfrastructureEvent")
    assert [(e.payload["kind"], e.payload["exit_code"]) for e in exited] == [("exited", 0)]
    with client.container.store.transaction() as tx:
        worker = tx.workers.get(done.worker_id)
    assert worker is not None and worker.state.value == "TERMINATED"
    assert "idle" in (worker.termination_reason or "")


def test_a_missing_image_fails_the_job_fast_with_a_clear_event(client: Client) -> None:
    client.add_provider(
        "ghost",
        "docker",
        priority=10,
        config={"image": "hodei-test/does-not-exist:1", "pull_policy": "never"},
    )
    job = client.submit("echo never runs", provider="ghost")

    done = client.wait(job.id, timeout=20)

    assert (done.state, done.failure_reason) == (JobState.FAILED, "provisioning_failed")
    infra = [e for e in client.timeline(job.id) if e.event_type == "InfrastructureEvent"]
    assert [e.payload["kind"] for e in infra] == ["image_missing"]
    assert "hodei-test/does-not-exist:1" in infra[0].payload["detail"]
    # No retry storm: later provisioning rounds launch nothing for the failed job.
    for _ in range(3):
        TASKS["provision"](client.container)
    with client.container.store.transaction() as tx:
        workers = [w for w in tx.workers.search(limit=100) if w.queue == "hodei.ghost"]
    assert [w.state.value for w in workers] == ["PROVISION_FAILED"]
    assert _events(client, workers[0].id, "WorkerProvisionFailed")


def test_an_orphan_labelled_container_is_removed(
    client: Client, docker_client: Any, image: str
) -> None:
    client.add_provider("dock", "docker", config=worker_config(image))
    orphan = docker_client.containers.run(
        image,
        ["/bin/sleep", "300"],
        detach=True,
        volumes=["/usr:/usr:ro"],
        labels={
            "hodei.managed": "true",
            "hodei.provider": "dock",
            "hodei.worker_id": str(uuid.uuid4()),
        },
    )
    unrelated = docker_client.containers.run(
        image, ["/bin/sleep", "300"], detach=True, volumes=["/usr:/usr:ro"]
    )
    try:
        report = _reconcile(client)

        assert report["dock"]["removed"] == [orphan.id]
        assert not _provider_containers(docker_client, "dock")
        unrelated.reload()
        assert unrelated.status == "running"
    finally:
        unrelated.remove(force=True)


def _running(c: Client, job: Job) -> Job:
    return wait_for(
        lambda: (j := c.get(job.id)).state is JobState.RUNNING and j,
        timeout=90,
        message="job RUNNING",
    )


def test_a_killed_container_shows_on_the_job_s_timeline(
    client: Client, docker_client: Any, image: str
) -> None:
    client.add_provider("dock", "docker", config=worker_config(image), priority=10)
    job = client.submit("sleep 120", provider="dock")
    running = _running(client, job)
    (container,) = _provider_containers(docker_client, "dock")
    container.kill()

    wait_for(
        lambda: _reconcile(client)["dock"]["lost"],
        timeout=30,
        interval=0.5,
        message="the worker to be declared lost",
    )

    done = client.get(job.id)
    assert (done.state, done.failure_reason) == (JobState.FAILED, "worker_lost")
    # On the job's own timeline (its worker's copy is interleaved in the full view).
    infra = [
        e
        for e in client.timeline(job.id)
        if e.event_type == "InfrastructureEvent" and e.aggregate_type == "job"
    ]
    assert [(e.payload["kind"], e.payload["exit_code"]) for e in infra] == [("exited", 137)]
    assert _events(client, running.worker_id, "WorkerLost")
    assert not _provider_containers(docker_client, "dock")


def test_an_oom_killed_job_shows_on_its_timeline(
    client: Client, docker_client: Any, image: str
) -> None:
    client.add_provider(
        "dock", "docker", config=worker_config(image, mem_limit="256m"), priority=10
    )
    hog = f"{container_python()} -c 'bytearray(1024 * 1024 * 1024)'"
    job = client.submit(hog, provider="dock")

    done = client.wait(job.id, timeout=90)
    assert done.state is JobState.FAILED

    def oom_recorded() -> list[Any]:
        _reconcile(client)
        return [
            e
            for e in client.timeline(job.id)
            if e.event_type == "InfrastructureEvent" and e.aggregate_type == "job"
        ]

    (event,) = wait_for(oom_recorded, timeout=30, interval=0.5, message="the OOM kill recorded")
    assert (event.payload["kind"], event.payload["oom_killed"]) == ("oom_killed", True)
    assert event.payload["worker_id"] == str(done.worker_id)


def _launched(c: Client, provider: str, besides: tuple[Worker, ...] = ()) -> Worker:
    """The worker provisioning launched for a job submitted to ``provider`` (its
    container created, the worker not registered), other than ``besides``."""
    c.submit("echo never", provider=provider)

    def launched() -> Worker | None:
        with c.container.store.reading() as tx:
            found = tx.workers.search(states=[WorkerState.PROVISIONING], queue=f"hodei.{provider}")
        known = {w.id for w in besides}
        return next(
            (w for w in found if w.infra_ref not in (None, LAUNCHING_REF) and w.id not in known),
            None,
        )

    worker: Worker = wait_for(launched, timeout=60, message=f"a launch on {provider}")
    return worker


def _worker_row(c: Client, worker: Worker) -> Worker:
    with c.container.store.reading() as tx:
        row = tx.workers.get(worker.id)
    assert row is not None
    return row


def test_exited_tells_a_container_that_ended_or_is_gone_from_a_running_one(
    client: Client, docker_client: Any, image: str
) -> None:
    """DockerLauncher.exited, what dead-launch detection (services/launches.py) asks of
    a launch that has not registered: None while its container runs, how it ended once
    it has (killed here: 137), and that it is gone once removed."""
    config = worker_config(image, command=["/usr/bin/sleep", "60"])
    client.add_provider("dexit", "docker", config=config, max_workers=2)
    killed = _launched(client, "dexit")
    removed = _launched(client, "dexit", besides=(killed,))
    launcher = client.container.launcher_for(client.provider("dexit").provider)
    wait_for(
        lambda: all(c.status == "running" for c in _provider_containers(docker_client, "dexit")),
        timeout=30,
        message="both containers running",
    )
    assert launcher.exited(killed) is None
    assert launcher.exited(removed) is None
    client.status()  # dead-launch detection: neither is failed
    assert _worker_row(client, killed).state is WorkerState.PROVISIONING

    docker_client.containers.get(f"hodei-worker-{killed.id}").kill()  # SIGKILL: 137
    wait_for(
        lambda: docker_client.containers.get(f"hodei-worker-{killed.id}").status == "exited",
        timeout=30,
        message="the killed container to have exited",
    )
    ended = "its container exited with code 137 before it registered"
    assert launcher.exited(killed) == ended
    client.status()
    failed = _worker_row(client, killed)
    assert (failed.state, failed.termination_reason) == (WorkerState.PROVISION_FAILED, ended)

    docker_client.containers.get(f"hodei-worker-{removed.id}").remove(force=True)
    assert launcher.exited(removed) == "its container is gone"
    client.status()
    gone = _worker_row(client, removed)
    assert (gone.state, gone.termination_reason) == (
        WorkerState.PROVISION_FAILED,
        "its container is gone",
    )
