"""/v1/events (a page, and a Server-Sent Events stream resumable with Last-Event-ID),
/v1/status and /v1/doctor."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from hodei.api.auth import Viewer, client_for, container
from hodei.domain.events import DomainEvent
from hodei.errors import InvalidInput
from hodei.sdk_base import checked_types
from hodei.services.jobs.job_ids import resolve_aggregate_id
from hodei.services.operators.doctor import DoctorOptions, DoctorReport
from hodei.services.operators.events_feed import FollowOptions, follow_events
from hodei.services.operators.status import SystemStatus
from hodei.services.ports.reads import EventFeed

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events and status"])

KEEPALIVE_S = 15.0
"""An SSE comment this often while no event matches, so proxies keep the stream open
and a client that went away is noticed."""

_EVENT_JSON = TypeAdapter(DomainEvent)


@router.get("/events", summary="Events in id order (role: viewer)")
def list_events(
    request: Request,
    who: Viewer,
    type: Annotated[list[str] | None, Query()] = None,
    aggregate_id: str | None = None,
    correlation_id: str | None = None,
    since: datetime | None = None,
    after_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DomainEvent]:
    if since is not None and since.tzinfo is None:
        raise InvalidInput("since must have a time zone (e.g. 2026-01-01T00:00:00Z)")
    return client_for(request, who).events(
        types=type or (),
        aggregate_id=aggregate_id,
        correlation_id=correlation_id,
        since=since,
        after_id=after_id,
        limit=limit,
    )


class _Stopped(Exception):
    """The client went away: ends the follower at its next wait."""


class _StoppableFeed:
    """An event feed whose wait ends the follower once the stream is closed."""

    def __init__(self, feed: EventFeed, stop: threading.Event) -> None:
        self._feed = feed
        self._stop = stop
        self.settle_delay_s = feed.settle_delay_s

    def listen(self) -> None:
        self._feed.listen()

    def last_id(self) -> int:
        return self._feed.last_id()

    def read_after(self, after_id: int, limit: int) -> list[DomainEvent]:
        return self._feed.read_after(after_id, limit)

    def horizon(self) -> int:
        return self._feed.horizon()

    def settled(self, horizon: int) -> bool:
        return self._feed.settled(horizon)

    def wait(self, timeout_s: float) -> None:
        if self._stop.is_set():
            raise _Stopped()
        self._feed.wait(min(timeout_s, 1.0))
        if self._stop.is_set():
            raise _Stopped()

    def close(self) -> None:
        self._feed.close()


@router.get(
    "/events/stream",
    summary="Live events as Server-Sent Events; resume with Last-Event-ID (role: viewer)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    who: Viewer,
    type: Annotated[list[str] | None, Query()] = None,
    aggregate_id: str | None = None,
    correlation_id: str | None = None,
    from_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Every event with id >= ``from_id`` (default: only new ones), each once, in id
    order. A reconnecting client sends the last id it saw as ``Last-Event-ID`` and gets
    exactly the events after it, from any server replica."""
    after_id = None if from_id is None else max(from_id, 1) - 1
    if last_event_id is not None:
        try:
            after_id = int(last_event_id)
        except ValueError:
            raise InvalidInput("Last-Event-ID must be an event id (a whole number)") from None
        if not 0 <= after_id < 2**63:
            raise InvalidInput("Last-Event-ID is out of range")
    wanted = set(checked_types(type))
    # A prefix of a job's or a worker's id is resolved once, before the stream opens,
    # so an unknown or ambiguous one is an error rather than a stream that never matches.
    aggregate = (
        None
        if aggregate_id is None
        else await run_in_threadpool(resolve_aggregate_id, container(request).store, aggregate_id)
    )
    feed = container(request).event_feed()

    def matches(event: DomainEvent) -> bool:
        return (
            (not wanted or event.event_type in wanted)
            and (correlation_id is None or event.correlation_id == correlation_id)
            and (aggregate is None or event.aggregate_id == aggregate)
        )

    return StreamingResponse(
        _sse(feed, after_id, matches),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(
    feed: EventFeed, after_id: int | None, matches: Callable[[DomainEvent], bool]
) -> AsyncIterator[str]:
    """The follower runs in a thread (it blocks on the database); events cross to this
    coroutine through a bounded queue, so a slow client slows its own follower only."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[DomainEvent | BaseException | None] = asyncio.Queue(maxsize=500)
    stop = threading.Event()

    def put(item: DomainEvent | BaseException | None) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=0.5)
                return True
        future.cancel()
        return False

    def pump() -> None:
        try:
            for event in follow_events(
                _StoppableFeed(feed, stop),
                after_id=after_id,
                matches=matches,
                options=FollowOptions(idle_wait_s=1.0),
            ):
                if not put(event):
                    return
        except _Stopped:
            return
        except Exception as exc:  # ended by a database error: tell the client, then end
            logger.warning("event stream ended: %s", exc)
            put(exc)
        put(None)

    thread = threading.Thread(target=pump, name="hodei-sse", daemon=True)
    thread.start()
    try:
        yield "retry: 1000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                why = (str(item).splitlines() or ["error"])[0]
                yield f"event: error\ndata: {why}\n\n"
                return
            data = _EVENT_JSON.dump_json(item).decode()
            yield f"id: {item.id}\nevent: {item.event_type}\ndata: {data}\n\n"
    finally:
        stop.set()


@router.get("/status", summary="Jobs and workers by state, queues, providers (role: viewer)")
def status(request: Request, who: Viewer) -> SystemStatus:
    return client_for(request, who).status()


@router.get("/doctor", summary="Consistency checks over recent history (role: viewer)")
def doctor(
    request: Request,
    who: Viewer,
    since_s: Annotated[float | None, Query(gt=0, le=366 * 86400)] = None,
    pending_after_s: Annotated[float | None, Query(gt=0, le=366 * 86400)] = None,
    unhealthy_after_s: Annotated[float | None, Query(gt=0, le=366 * 86400)] = None,
) -> DoctorReport:
    """The thresholds not given are the defaults; stale workers are judged by this
    server's HODEI_WORKER_STALE_AFTER."""
    c = container(request)
    options = DoctorOptions(stale_after=timedelta(seconds=c.settings.worker_stale_after_s))
    given = {
        "since": since_s,
        "pending_after": pending_after_s,
        "unhealthy_after": unhealthy_after_s,
    }
    changes: dict[str, Any] = {k: timedelta(seconds=v) for k, v in given.items() if v is not None}
    options = dataclasses.replace(options, **changes)
    return client_for(request, who).doctor(options=options)
