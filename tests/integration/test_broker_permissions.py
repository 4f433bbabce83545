"""Least privilege on the broker (issue 19, item 5): a worker of provider A with a
RabbitMQ user of its own (docs/operations.md, "A broker user per provider") runs A's
jobs, and cannot read, bind to or publish into provider B's queue.

The test makes a vhost and two users with ``rabbitmqctl`` (the management API is not
always enabled) and removes them at the end.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from hodei import JobSpec, JobState
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token
from hodei.services.jobs.submission import submit_jobs
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import hodei_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]


def permissions(provider: str) -> tuple[str, str, str]:
    """configure, write, read: the regexes docs/operations.md gives a provider's user."""
    own = rf"hodei\.{provider}"
    # Celery's control exchanges and the worker's own reply queue (names of hodei
    # workers), and the event exchange Flower reads: no job message passes there.
    celery = r"celery\.pidbox|reply\.celery\.pidbox|hodei-worker-[0-9a-f]+@.*\.celery\.pidbox"
    configure = write = rf"^({own}|{celery}|celeryev)$"
    read = rf"^({own}|{celery})$"
    return configure, write, read


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost(rabbitmq_url: str) -> Iterator[dict[str, str]]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    tag = uuid.uuid4().hex[:8]
    names = {"vhost": f"hodei-test-{tag}", "a": f"a{tag}", "b": f"b{tag}"}
    passwords = {p: uuid.uuid4().hex for p in ("a", "b")}
    # amqp://user:password@host:port/vhost
    credentials, rest = rabbitmq_url.split("//", 1)[1].split("@", 1)
    admin, base = credentials.split(":", 1)[0], rest.split("/", 1)[0]
    rabbitmqctl("add_vhost", names["vhost"])
    try:
        rabbitmqctl("set_permissions", "-p", names["vhost"], admin, ".*", ".*", ".*")
        for p in ("a", "b"):
            user = f"hodei-{names[p]}-{tag}"
            rabbitmqctl("add_user", user, passwords[p])
            rabbitmqctl("set_permissions", "-p", names["vhost"], user, *permissions(names[p]))
        yield {
            **names,
            "admin_url": f"amqp://{credentials}@{base}/{names['vhost']}",
            **{
                f"{p}_url": f"amqp://hodei-{names[p]}-{tag}:{passwords[p]}@{base}/{names['vhost']}"
                for p in ("a", "b")
            },
        }
    finally:
        for p in ("a", "b"):
            subprocess.run(["rabbitmqctl", "-q", "delete_user", f"hodei-{names[p]}-{tag}"])
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", names["vhost"]])


@pytest.fixture
def client(pg_settings: Settings, vhost: dict[str, str]) -> Iterator[Client]:
    settings = dataclasses.replace(pg_settings, broker_url=vhost["admin_url"])
    c = Client.from_env(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    # max_workers 1, taken by the worker this test starts with A's own broker user.
    c.add_provider(vhost["a"], "local", max_workers=1)
    yield c
    stop_workers(c)
    c.close()


def _refused(url: str, action: Any) -> str:
    """The broker's refusal of ``action(channel)`` with ``url``'s user ("" if allowed)."""
    # Publisher confirms: a refused publish is reported at once, not on a later call.
    with Connection(url, connect_timeout=10, transport_options={"confirm_publish": True}) as conn:
        try:
            action(conn.channel())
        except Exception as exc:  # amqp's AccessRefused: the message says what
            return str(exc)
    return ""


def test_a_providers_broker_user_runs_its_jobs_and_cannot_touch_another_providers_queue(
    client: Client, vhost: dict[str, str], tmp_path: Path
) -> None:
    # Provider B's queue holds a message (declared and sent as the administrator).
    b_queue = f"hodei.{vhost['b']}"
    with Connection(vhost["admin_url"]) as conn:
        exchange = Exchange(b_queue, "direct", durable=True)
        queue = Queue(b_queue, exchange, routing_key=b_queue, durable=True)
        producer = conn.Producer()
        producer.publish(
            {"secret": "for B"}, exchange=exchange, routing_key=b_queue, declare=[queue]
        )

    # A worker of A started by hand with A's own user runs A's job: the rights suffice.
    issued = create_worker_token(
        client.container.store,
        client.container.clock,
        provider_name=vhost["a"],
        ttl_s=60,
        actor="test",
    )
    settings = dataclasses.replace(client.container.settings, broker_url=vhost["a_url"])
    c = client.container
    # Stored and published without provisioning; the burst worker runs it, then exits.
    spec = JobSpec.create("echo ran on A", provider=vhost["a"])
    [submitted] = submit_jobs(c.store, c.clock, c.publisher, [spec], actor="test")
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.run(
            [sys.executable, "-m", "hodei", "worker", "start", "--burst"],
            env=hodei_env(settings, HODEI_OTP_TOKEN=issued.secret),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=90,
        )
    worker_log = (tmp_path / "worker.log").read_text()[-2000:]
    assert worker.returncode == 0, worker_log
    done = client.get(submitted.job.id)
    assert done.state is JobState.SUCCEEDED, worker_log
    assert done.worker_id == issued.worker.id

    a_url = vhost["a_url"]
    # Read B's message, by name or through a queue of its own bound to B's exchange.
    assert "ACCESS_REFUSED" in _refused(a_url, lambda ch: ch.basic_get(b_queue))
    assert "ACCESS_REFUSED" in _refused(
        a_url, lambda ch: Queue(b_queue, exchange, routing_key=b_queue, durable=True)(ch).declare()
    )
    own = f"hodei.{vhost['a']}"
    assert "ACCESS_REFUSED" in _refused(
        a_url, lambda ch: ch.queue_bind(own, exchange=b_queue, routing_key=b_queue)
    )
    # Publish into B's queue (a job for B's workers).
    assert "ACCESS_REFUSED" in _refused(
        a_url,
        lambda ch: Producer(ch).publish("x", exchange=b_queue, routing_key=b_queue),
    )
    # B's message is still there, untouched.
    with Connection(vhost["admin_url"]) as conn:
        _, waiting, _ = conn.default_channel.queue_declare(b_queue, passive=True)
    assert waiting == 1
