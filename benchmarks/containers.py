"""Start latency of Docker workers: the time from submit to JobStarted.

Three measurements, each on its own `docker` provider whose containers run the real
worker image (workers/Dockerfile; `.ci/build-images` builds it from a local Debian
base, or --image names one already on the engine) with host networking, so they reach
the database and broker this benchmark uses:

cold  no worker alive, the image present: the submit launches a container, which
      starts `hodei worker start`, registers with its token and takes the job. Each
      try waits until the previous worker idled out (1 s) and its container is gone.
warm  one worker alive and idle (from an untimed first job): it takes the job.
pool  `min_workers=1`: the provisioner keeps one worker ready, and that worker does
      not idle out. Each try first waits three idle timeouts (3 s), after which a
      worker outside a pool would have exited.

Latency = the job's `started_at` (written with JobStarted by the worker) minus the
wall clock just before `Client.submit`; one job at a time. The provisioner's and
reconciler's periodic passes (beat's `provision` and `reconcile_providers`) run in a
thread of this process every second. Every container it started is removed at the end.

    .venv/bin/python benchmarks/containers.py [--tries 10] [--json] [--image TAG]
        [--database-url URL] [--broker-url redis://127.0.0.1:6379/5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

DEFAULT_IMAGE = "hodei-worker:ci"
IDLE_TIMEOUT_S = 1.0
JSON_KEYS = (
    "cold_p50_s",
    "cold_p95_s",
    "warm_p50_ms",
    "warm_p95_ms",
    "pool_p50_ms",
    "pool_p95_ms",
    "tries",
    "storage_driver",
    "image",
    "image_mb",
)


def ensure_image(image: str, build: bool) -> None:
    import docker

    client = docker.from_env()
    try:
        if build and image == DEFAULT_IMAGE:
            # Idempotent and cached: under a second when nothing changed.
            subprocess.run(["bash", str(common.REPO / ".ci" / "build-images")], check=True)
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SystemExit(f"image {image} is not on the engine; run .ci/build-images") from None
    finally:
        client.close()


@contextmanager
def beat(container: Any) -> Iterator[None]:
    """The provisioner's and reconciler's periodic passes, every second."""
    from hodei.queueing.maintenance_tasks import TASKS

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            for task in ("provision", "reconcile_providers"):
                try:
                    TASKS[task](container)
                except Exception as exc:
                    print(f"beat: {task} failed: {exc}", file=sys.stderr)

    thread = threading.Thread(target=loop, name="bench-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def latency_s(client: Any, provider: str) -> float:
    """Submit one job to ``provider``; seconds from just before submit to its start."""
    before = datetime.now(UTC)
    job = client.submit("true", provider=provider)
    done = client.wait(job.id, timeout=120)
    if done.state.value != "SUCCEEDED" or done.started_at is None:
        raise RuntimeError(f"job {job.id} on {provider} ended {done.state}: {done.error}")
    return float((done.started_at - before).total_seconds())


def live_workers(client: Any, provider: str) -> list[Any]:
    from hodei.domain.records import queue_for
    from hodei.domain.states import LIVE_WORKER_STATES

    with client.container.store.transaction() as tx:
        return list(tx.workers.search(states=LIVE_WORKER_STATES, queue=queue_for(provider)))


def containers(docker_client: Any, provider: str) -> list[Any]:
    labels = ["hodei.managed=true", f"hodei.provider={provider}"]
    return list(docker_client.containers.list(all=True, filters={"label": labels}))


def measure(
    client: Any, docker_client: Any, image: str, tries: int, run: str, say: Callable[[str], None]
) -> dict[str, list[float]]:
    def add(mode: str, **fields: Any) -> str:
        name = f"{mode}-{run}"
        environment = {"HODEI_WORKER_IDLE_TIMEOUT": str(fields.pop("idle_timeout_s"))}
        config = {
            "image": image,
            "network_mode": "host",
            "pull_policy": "never",
            "environment": environment,
        }
        client.add_provider(name, "docker", config=config, max_workers=2, **fields)
        return name

    results: dict[str, list[float]] = {"cold": [], "warm": [], "pool": []}

    cold = add("cold", idle_timeout_s=IDLE_TIMEOUT_S)
    for i in range(tries):
        common.wait_for(
            lambda: not live_workers(client, cold) and not containers(docker_client, cold),
            timeout=60,
            what="the previous cold worker to exit and its container to be removed",
        )
        results["cold"].append(latency_s(client, cold))
        say(f"cold {i + 1}/{tries}: {results['cold'][-1]:.2f} s")

    warm = add("warm", idle_timeout_s=600)
    latency_s(client, warm)  # starts the worker; not timed
    for i in range(tries):
        results["warm"].append(latency_s(client, warm))
        say(f"warm {i + 1}/{tries}: {results['warm'][-1] * 1000:.0f} ms")

    pool = add("pool", idle_timeout_s=IDLE_TIMEOUT_S, min_workers=1)
    common.wait_for(
        lambda: any(w.state.value == "READY" for w in live_workers(client, pool)),
        timeout=60,
        what="the pool's worker to be READY",
    )
    for i in range(tries):
        time.sleep(IDLE_TIMEOUT_S * 3)
        results["pool"].append(latency_s(client, pool))
        say(f"pool {i + 1}/{tries}: {results['pool'][-1] * 1000:.0f} ms")
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    import docker

    from hodei.sdk import Client

    ensure_image(args.image, not args.no_build)
    docker_client = docker.from_env()
    run_id = uuid.uuid4().hex[:6]
    say = (lambda line: print(line, file=sys.stderr)) if args.verbose else (lambda _line: None)
    providers: list[str] = []
    try:
        with (
            common.scratch_database(args.database_url) as database_url,
            common.scratch_home("hodei-bench-containers-") as home,
        ):
            common.flush_redis(args.broker_url)
            client = Client.from_env(
                home=home, database_url=database_url, broker_url=args.broker_url
            )
            try:
                client.disable_provider("local")
                with beat(client.container):
                    results = measure(client, docker_client, args.image, args.tries, run_id, say)
                providers = [v.provider.name for v in client.providers()]
            finally:
                client.close()
                common.flush_redis(args.broker_url)
        info = docker_client.info()
        size = docker_client.images.get(args.image).attrs["Size"]
    finally:
        for name in [*providers, *(f"{m}-{run_id}" for m in ("cold", "warm", "pool"))]:
            for container in containers(docker_client, name):
                container.remove(force=True)
        docker_client.close()
    cold, warm, pool = results["cold"], results["warm"], results["pool"]
    return {
        "cold_p50_s": round(common.median(cold), 3),
        "cold_p95_s": round(common.percentile(cold, 95), 3),
        "warm_p50_ms": round(common.median(warm) * 1000, 1),
        "warm_p95_ms": round(common.percentile(warm, 95) * 1000, 1),
        "pool_p50_ms": round(common.median(pool) * 1000, 1),
        "pool_p95_ms": round(common.percentile(pool, 95) * 1000, 1),
        "tries": args.tries,
        "storage_driver": info["Driver"],
        "image": args.image,
        "image_mb": round(size / 1e6),
    }


def render_table(r: dict[str, Any]) -> str:
    cold_p50, cold_p95 = r["cold_p50_s"], r["cold_p95_s"]
    warm_p50, warm_p95 = r["warm_p50_ms"], r["warm_p95_ms"]
    pool_p50, pool_p95 = r["pool_p50_ms"], r["pool_p95_ms"]
    lines = [
        f"Docker worker start latency, submit to JobStarted ({r['tries']} tries each; "
        f"storage driver {r['storage_driver']}; image {r['image']}, {r['image_mb']} MB)",
        f"{'':34} {'p50':>10} {'p95':>10}",
        f"{'cold (container started per job)':34} {cold_p50:>8.2f} s {cold_p95:>8.2f} s",
        f"{'warm (an idle worker alive)':34} {warm_p50:>7.0f} ms {warm_p95:>7.0f} ms",
        f"{'pool (min_workers=1)':34} {pool_p50:>7.0f} ms {pool_p95:>7.0f} ms",
        f"{'ratio cold / warm (p50)':34} {cold_p50 * 1000 / warm_p50:>10.0f}",
        f"reproduce: {common.command_line()}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit-to-start latency of cold, warm and pooled Docker workers."
    )
    parser.add_argument("--tries", type=int, default=10, help="jobs per measurement (>= 1)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="worker image (%(default)s)")
    parser.add_argument(
        "--no-build", action="store_true", help="do not run .ci/build-images for the image"
    )
    common.add_store_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="print every try on stderr")
    args = parser.parse_args(argv)
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with common.exit_on_signals(), common.broker_lock(args.broker_url):
        result = run(args)
    if args.json:
        print(render_table(result), file=sys.stderr)
        print(json.dumps({key: result[key] for key in JSON_KEYS}))
    else:
        print(render_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
