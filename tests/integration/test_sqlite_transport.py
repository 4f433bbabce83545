"""hodei's SQLite transport (the embedded default's broker): priority first, then in
order; each message to one consumer among several processes; old broker files too."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from kombu import Connection, Exchange, Queue

from hodei.queueing.app import _use_hodei_sqlite_transport, create_app
from hodei.queueing.sqlite_transport import Transport
from hodei.settings import Settings

QUEUE = "hodei.test.prio"

# argv: queue, URL, mode. Publishes ("stock": by kombu's own transport, "hodei") the
# messages {"n": N} with the priorities of argv[4:], in that order; or ("consume") takes
# messages until the queue stays empty and prints [[n, priority], ...] as it got them.
_SCRIPT = """
import json, sys
from queue import Empty
from kombu import Connection, Exchange, Queue
from hodei.queueing.app import _use_hodei_sqlite_transport
name, url, mode, *priorities = sys.argv[1:]
if mode != "stock":
    _use_hodei_sqlite_transport()  # what create_app does: sqla+ URLs get hodei's
queue = Queue(name, Exchange(name), routing_key="k")
with Connection(url) as conn:
    if mode == "consume":
        simple, got = conn.SimpleQueue(queue), []
        while True:
            try:
                message = simple.get(timeout=2)
            except Empty:
                break
            got.append([message.payload["n"], message.properties["priority"]])
            message.ack()
        print(json.dumps(got))
    else:
        producer = conn.Producer(serializer="json")
        for n, priority in enumerate(priorities):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="k",
                             declare=[queue], priority=int(priority))
"""


def _run(url: str, mode: str, *priorities: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, QUEUE, url, mode, *map(str, priorities)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _consumed(process: subprocess.Popen[str]) -> list[tuple[int, int]]:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    return [(n, p) for n, p in json.loads(out)]


def _in_order(priorities: list[int]) -> list[tuple[int, int]]:
    """What a priority broker hands out: the highest priority first, then FIFO."""
    return sorted(enumerate(priorities), key=lambda np: (-np[1], np[0]))


def test_the_embedded_default_uses_the_transport(tmp_path: Path) -> None:
    app = create_app(Settings.from_env(home=tmp_path))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)


def test_the_highest_priority_goes_first_then_the_oldest(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    priorities = [0, 5, 9, 5, 0, 9, 3, 9, 0]
    queue = Queue(QUEUE, Exchange(QUEUE), routing_key="k")
    _use_hodei_sqlite_transport()
    with Connection(url) as conn:
        assert isinstance(conn.transport, Transport)
        producer = conn.Producer(serializer="json")
        for n, priority in enumerate(priorities):
            producer.publish(
                {"n": n},
                exchange=queue.exchange,
                routing_key="k",
                declare=[queue],
                priority=priority,
            )
        simple = conn.SimpleQueue(queue)
        got = []
        for _ in priorities:
            message = simple.get(timeout=5)
            got.append((message.payload["n"], message.properties["priority"]))
            message.ack()
        simple.close()
    assert got == _in_order(priorities)


def test_a_broker_file_of_kombus_own_transport_gets_the_index_and_the_order(
    tmp_path: Path,
) -> None:
    # A broker.sqlite from before: written by kombu's transport, messages waiting in it.
    path = tmp_path / "broker.sqlite"
    url = f"sqla+sqlite:///{path}"
    priorities = [1, 7, 1, 7, 9]
    publisher = _run(url, "stock", *priorities)
    assert publisher.wait(timeout=60) == 0
    assert not _priority_index(path)
    assert _consumed(_run(url, "consume")) == _in_order(priorities)
    assert _priority_index(path)


def test_concurrent_consumers_take_each_message_once_in_priority_order(
    tmp_path: Path,
) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    priorities = [(n * 7) % 10 for n in range(400)]
    publisher = _run(url, "hodei", *priorities)
    assert publisher.wait(timeout=120) == 0
    consumers = [_run(url, "consume") for _ in range(4)]
    got = [_consumed(c) for c in consumers]
    everything = [message for one in got for message in one]
    assert sorted(everything) == sorted(enumerate(priorities))  # each exactly once
    # Each consumer takes the queue's head each time, so what it got is in the order.
    for one in got:
        assert one == sorted(one, key=lambda np: (-np[1], np[0]))


def _priority_index(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    return "ix_kombu_message_priority" in names
