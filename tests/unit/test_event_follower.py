"""The follower's ordering rules against an in-memory feed that commits out of order,
rolls back, and loses its connection (the fake half of the EventFeed port)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

import pytest

from hodei.domain.events import DomainEvent
from hodei.errors import DatabaseUnavailable
from hodei.services.operators.events_feed import FollowOptions, follow_events

FAST = FollowOptions(idle_wait_s=0.0, retry_s=0.0, max_retry_s=0.0)


class FakeFeed:
    """Events get ids when a transaction inserts them and become visible at commit,
    like a sequence under concurrent transactions. Transactions are numbered like xids."""

    def __init__(self, settle_delay_s: float = 0.0) -> None:
        self.settle_delay_s = settle_delay_s
        self.next_id = 1
        self.next_xid = 100
        self.visible: dict[int, DomainEvent] = {}
        self.in_flight: dict[int, list[DomainEvent]] = {}  # xid -> its events
        self.fail_next_reads = 0
        self.on_wait: list[object] = []  # callables run when the follower waits
        self.reads = 0
        self.closed = False

    def begin(self, count: int = 1) -> int:
        xid = self.next_xid
        self.next_xid += 1
        self.in_flight[xid] = [self._event() for _ in range(count)]
        return xid

    def commit(self, xid: int) -> list[int]:
        events = self.in_flight.pop(xid)
        for e in events:
            assert e.id is not None
            self.visible[e.id] = e
        return [e.id for e in events if e.id is not None]

    def rollback(self, xid: int) -> None:
        self.in_flight.pop(xid)

    def insert(self, count: int = 1) -> list[int]:
        return self.commit(self.begin(count))

    def _event(self) -> DomainEvent:
        event = DomainEvent(
            event_type="JobCreated",
            aggregate_type="job",
            aggregate_id=uuid.uuid4(),
            actor="test",
            occurred_at=datetime.now(UTC),
            id=self.next_id,
        )
        self.next_id += 1
        return event

    # -- the EventFeed port ---------------------------------------------------------
    def listen(self) -> None:
        pass

    def last_id(self) -> int:
        return max(self.visible, default=0)

    def read_after(self, after_id: int, limit: int) -> list[DomainEvent]:
        self.reads += 1
        if self.fail_next_reads:
            self.fail_next_reads -= 1
            raise DatabaseUnavailable("database unavailable: connection reset")
        ids = sorted(i for i in self.visible if i > after_id)[:limit]
        return [self.visible[i] for i in ids]

    def horizon(self) -> int:
        return self.next_xid

    def settled(self, horizon: int) -> bool:
        return all(xid >= horizon for xid in self.in_flight)

    def wait(self, timeout_s: float) -> None:
        if self.on_wait:
            action = self.on_wait.pop(0)
            assert callable(action)
            action()

    def close(self) -> None:
        self.closed = True


def ids(stream: Iterator[DomainEvent], n: int) -> list[int]:
    return [e.id for e in islice(stream, n) if e.id is not None]


def test_it_starts_after_the_newest_event_by_default() -> None:
    feed = FakeFeed()
    feed.insert(3)
    feed.on_wait = [lambda: feed.insert(2)]
    assert ids(follow_events(feed, options=FAST), 2) == [4, 5]


def test_an_event_committed_late_is_not_skipped_and_order_is_kept() -> None:
    feed = FakeFeed()
    slow = feed.begin()  # takes id 1, commits last
    feed.insert()  # id 2 is visible first
    feed.on_wait = [lambda: None, lambda: None, lambda: feed.commit(slow)]
    assert ids(follow_events(feed, after_id=0, options=FAST), 2) == [1, 2]


def test_a_rolled_back_id_is_skipped_once_its_transaction_ended() -> None:
    feed = FakeFeed()
    doomed = feed.begin()  # id 1
    feed.insert()  # id 2
    feed.on_wait = [lambda: None, lambda: feed.rollback(doomed), lambda: feed.insert()]
    assert ids(follow_events(feed, after_id=0, options=FAST), 2) == [2, 3]


def test_a_gap_left_by_a_stuck_transaction_is_given_up_after_the_timeout() -> None:
    feed = FakeFeed()
    feed.begin()  # never ends
    feed.insert()
    clock = iter(float(t) for t in range(10_000))
    options = FollowOptions(idle_wait_s=0.0, gap_timeout_s=5.0)
    stream = follow_events(feed, after_id=0, options=options, monotonic=lambda: next(clock))
    assert ids(stream, 1) == [2]


def test_purged_history_does_not_hold_a_replay() -> None:
    feed = FakeFeed()
    feed.insert(10)
    for purged in (2, 3, 7):
        del feed.visible[purged]
    assert ids(follow_events(feed, after_id=0, options=FAST), 7) == [1, 4, 5, 6, 8, 9, 10]


def test_a_lost_connection_resumes_from_the_cursor_without_repeats() -> None:
    feed = FakeFeed()
    feed.insert(3)

    def drop_then_write() -> None:
        feed.fail_next_reads = 2
        feed.insert(3)

    feed.on_wait = [drop_then_write]
    stream = follow_events(feed, after_id=0, options=FAST)
    assert ids(stream, 6) == [1, 2, 3, 4, 5, 6]
    stream.close()
    assert feed.closed


def test_filters_do_not_move_the_cursor_backwards_or_repeat() -> None:
    feed = FakeFeed()
    feed.insert(6)
    odd = follow_events(feed, after_id=0, matches=lambda e: (e.id or 0) % 2 == 1, options=FAST)
    assert ids(odd, 3) == [1, 3, 5]


def test_from_an_id_inside_the_history_resumes_exactly() -> None:
    feed = FakeFeed()
    feed.insert(5)
    first = ids(follow_events(feed, after_id=0, options=FAST), 3)
    rest = ids(follow_events(feed, after_id=first[-1], options=FAST), 2)
    assert first + rest == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("batch", [1, 2, 500])
def test_batches_of_any_size_give_the_same_stream(batch: int) -> None:
    feed = FakeFeed()
    late = feed.begin(2)  # ids 1-2
    feed.insert(3)  # ids 3-5
    feed.on_wait = [lambda: feed.commit(late)] + [lambda: None] * 10
    options = FollowOptions(batch=batch, idle_wait_s=0.0)
    assert ids(follow_events(feed, after_id=0, options=options), 5) == [1, 2, 3, 4, 5]


def test_a_wait_that_loses_its_connection_loses_no_event() -> None:
    feed = FakeFeed()
    feed.insert(3)

    def listen_lost() -> None:
        feed.insert(2)
        raise DatabaseUnavailable("lost LISTEN hodei_events: terminating connection")

    feed.on_wait = [listen_lost]
    assert ids(follow_events(feed, after_id=0, options=FAST), 5) == [1, 2, 3, 4, 5]
