"""Publishing on RabbitMQ: a job's queue is declared before its messages go out, so a
provider's first job reaches a queue that did not exist yet (AMQP drops a message sent
to a queue nobody declared)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kombu import Connection

from hodei.queueing.app import create_app
from hodei.queueing.publisher import CeleryPublisher
from hodei.services.jobs.dispatch import Confirmation
from hodei.services.ports.publisher import Publication
from hodei.settings import Settings

pytestmark = [pytest.mark.rabbitmq]


@pytest.fixture
def fresh_queue(rabbitmq_url: str) -> Iterator[str]:
    name = f"hodei.test-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(rabbitmq_url) as conn:
        conn.default_channel.queue_delete(name)


def test_messages_for_a_new_queue_reach_it(
    tmp_path: Path, rabbitmq_url: str, fresh_queue: str
) -> None:
    app = create_app(Settings.from_env(home=tmp_path, broker_url=rabbitmq_url))
    confirmed: list[Confirmation] = []

    def confirm(batch: Sequence[Confirmation]) -> None:
        confirmed.extend(batch)

    publisher = CeleryPublisher(app, confirm)
    one = Publication(uuid.uuid4(), 1, fresh_queue, "first")
    many = [Publication(uuid.uuid4(), 1, fresh_queue, f"job-{i}") for i in range(3)]
    publisher.publish(one)
    assert len(list(publisher.publish_many(many))) == 3
    with Connection(rabbitmq_url) as conn:
        _, waiting, _ = conn.default_channel.queue_declare(fresh_queue, passive=True)
    assert waiting == 4
    assert {c.job_id for c in confirmed} == {one.job_id, *(p.job_id for p in many)}
