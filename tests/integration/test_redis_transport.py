"""hodei's Redis transport: one client per channel, messages still flow, acks still clear."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from hodei.queueing import redis_transport
from hodei.queueing.app import create_app
from hodei.settings import Settings

pytestmark = [pytest.mark.redis]


def test_the_hodei_app_uses_the_transport(tmp_path: Path, redis_url: str) -> None:
    app = create_app(Settings.from_env(home=tmp_path, broker_url=redis_url))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, redis_transport.Transport)


def test_an_app_connected_earlier_leaves_hodei_its_transport(
    tmp_path: Path, redis_url: str
) -> None:
    # kombu caches what "redis" resolved to, process-wide: another app connecting first
    # used to leave hodei's client on the stock transport.
    with Connection(redis_url) as other:
        assert type(other.transport) is kombu_redis.Transport
    app = create_app(Settings.from_env(home=tmp_path, broker_url=redis_url))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, redis_transport.Transport)
    with Connection(redis_url) as other:
        assert type(other.transport) is kombu_redis.Transport  # other apps keep theirs


def test_one_client_serves_every_command_until_the_pool_changes(redis_url: str) -> None:
    with Connection(redis_url, transport=redis_transport.Transport) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert channel._create_client(asynchronous=True) is not first
        channel._pool = None  # what close/reconnect does
        assert channel._create_client() is not first


def test_publish_consume_and_ack_through_the_shared_client(redis_url: str) -> None:
    queue = Queue("hodei.test.transport", Exchange("hodei.test.transport"), "t")
    with Connection(redis_url, transport=redis_transport.Transport) as conn:
        producer = conn.Producer(serializer="json")
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="t", declare=[queue])
        received: list[int] = []
        with conn.Consumer(
            queue, callbacks=[lambda body, msg: (received.append(body["n"]), msg.ack())]
        ):
            while len(received) < 3:
                conn.drain_events(timeout=5)
    assert sorted(received) == [0, 1, 2]
    raw = redis.Redis.from_url(redis_url)
    assert raw.llen("hodei.test.transport") == 0
    assert raw.hlen("unacked") == 0  # every ack reached Redis
