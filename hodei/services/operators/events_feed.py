"""Reading the audit log: a job's timeline, a workflow's, filtered lists, and a live
follower that neither skips nor repeats an event across reconnects."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from hodei.domain.events import DomainEvent
from hodei.errors import JobNotFound, ServiceUnavailable
from hodei.services.ports.reads import EventFeed, ReadStore
from hodei.services.ports.store import EventQuery

logger = logging.getLogger(__name__)

MAX_WORKFLOW_JOBS = 1000


def job_timeline(reads: ReadStore, job_id: UUID, *, limit: int = 5000) -> list[DomainEvent]:
    """The job's events, with those of the workers that ran its attempts (their
    infrastructure events included) and of those workers' bootstrap tokens, in order.
    Of those, only what happened from the job's creation on: a warm worker's launch,
    and the jobs it ran before, belong to the worker's history, not this job's."""
    with reads.read() as r:
        job = r.job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        related = r.related_aggregates([job.id])
        return r.events_of([job.id], None, limit, related=related, related_since=job.created_at)


def workflow_timeline(
    reads: ReadStore, correlation_id: str, *, limit: int = 5000
) -> list[DomainEvent]:
    """Every event of a workflow: its jobs' timelines and anything else carrying the
    correlation id."""
    with reads.read() as r:
        job_ids = r.jobs_in_workflow(correlation_id, MAX_WORKFLOW_JOBS)
        related = r.related_aggregates(job_ids)
        return r.events_of([*job_ids, *related], correlation_id, limit)


def list_events(reads: ReadStore, query: EventQuery) -> list[DomainEvent]:
    """Events in id order: from ``since``/``after_id`` on, or else the latest ``limit``."""
    with reads.read() as r:
        if query.since is None and query.after_id is None:
            return list(reversed(r.events(replace(query, newest_first=True))))
        return r.events(query)


@dataclass
class _Gap:
    """Ids missing below ``mark`` when first seen; they may be transactions in flight."""

    mark: int
    seen: float
    horizon: int | None = None


@dataclass(frozen=True)
class FollowOptions:
    batch: int = 500
    idle_wait_s: float = 1.0
    gap_timeout_s: float = 60.0
    retry_s: float = 0.5
    max_retry_s: float = 15.0


def follow_events(
    feed: EventFeed,
    *,
    after_id: int | None = None,
    matches: Callable[[DomainEvent], bool] | None = None,
    options: FollowOptions = FollowOptions(),
    monotonic: Callable[[], float] = time.monotonic,
) -> Generator[DomainEvent, None, None]:
    """Yield events with id > ``after_id`` (default: only new ones) in strictly
    increasing id order, forever.

    Concurrent transactions commit out of id order, so a missing id may still appear.
    The follower holds back at such a gap until every transaction in flight when it was
    seen has ended (or ``gap_timeout_s`` passed); only then is the gap final. Because
    the output never goes back, resuming from the last id seen is exact. A lost
    database connection is retried with backoff from the same cursor.
    """
    cursor = _Cursor(after_id)
    backoff = options.retry_s
    try:
        while True:
            try:
                ready, again = _advance(feed, cursor, options, monotonic)
            except ServiceUnavailable as exc:
                backoff = _back_off(exc, backoff, cursor, options)
                continue
            backoff = options.retry_s
            # Passed on before any wait: the cursor has already moved past them.
            yield from (e for e in ready if matches is None or matches(e))
            if again:
                continue
            try:
                feed.wait(min(options.idle_wait_s, 0.05) if cursor.gap else options.idle_wait_s)
            except ServiceUnavailable as exc:
                backoff = _back_off(exc, backoff, cursor, options)
    finally:
        feed.close()


def _back_off(
    exc: ServiceUnavailable, backoff: float, cursor: _Cursor, options: FollowOptions
) -> float:
    logger.warning("event feed: %s; retrying in %.1fs from id %s", exc, backoff, cursor.after)
    time.sleep(backoff)
    return min(backoff * 2, options.max_retry_s)


@dataclass
class _Cursor:
    after: int | None  # every event up to this id has been passed on
    settled_upto: int = 0  # missing ids at or below this are final (rolled back, purged)
    gap: _Gap | None = None


def _advance(
    feed: EventFeed, c: _Cursor, options: FollowOptions, monotonic: Callable[[], float]
) -> tuple[list[DomainEvent], bool]:
    """The events that certainly come next, and whether to read again without waiting."""
    feed.listen()
    if c.after is None:
        c.after = feed.last_id()
    if c.gap is not None and _settle(feed, c.gap, monotonic(), options.gap_timeout_s):
        c.settled_upto, c.gap = max(c.settled_upto, c.gap.mark), None
    rows = feed.read_after(c.after, options.batch)
    ready: list[DomainEvent] = []
    for event in rows:
        assert event.id is not None
        if event.id != c.after + 1 and event.id - 1 > c.settled_upto:
            if c.gap is not None:
                return ready, False  # still waiting for transactions in flight
            c.gap = _Gap(mark=feed.last_id(), seen=monotonic())
            logger.debug("waiting for in-flight events after id %d", c.after)
            return ready, feed.settle_delay_s == 0  # SQLite: it settles at once
        c.after = event.id
        ready.append(event)
    return ready, len(rows) == options.batch


def _settle(feed: EventFeed, gap: _Gap, now: float, timeout_s: float) -> bool:
    if gap.horizon is None:
        # A transaction gets its id a moment after taking a sequence value; wait that out.
        if now - gap.seen < feed.settle_delay_s:
            return False
        gap.horizon = feed.horizon()
    if feed.settled(gap.horizon):
        return True
    if now - gap.seen > timeout_s:
        logger.warning(
            "event feed: gave up after %.0fs waiting for transactions in flight below id %d",
            timeout_s,
            gap.mark,
        )
        return True
    return False


# -- one-line summaries ---------------------------------------------------------------

_SUMMARY_KEYS = (
    "attempt",
    # what a held job waits for (JobHeld), and why it was cancelled (dependency_failed)
    "run_at",
    "after",
    "after_count",
    "after_any",
    "concurrency_key",
    "max_concurrency",
    "dependency",
    "dependency_state",
    "waited_s",
    "down_s",  # WorkerReconnected: how long the broker was gone
    "provider",
    "queue",
    "worker_id",
    "lost_worker_id",
    "task_id",
    "exit_code",
    "signal",
    "reason",
    "kind",
    "detail",
    "duration_ms",
    "next_attempt_at",
    "expires_at",
    "last_heartbeat",
    "infra_ref",
    "message",
    "error",
)


def summarize(event_type: str | None, payload: dict[str, Any]) -> str:
    """A one-line summary of an event: its state change, then the fields that matter."""
    parts = []
    if payload.get("old_state") or payload.get("new_state"):
        parts.append(f"{payload.get('old_state') or '∅'}→{payload.get('new_state')}")
    elif payload.get("old") or payload.get("new"):  # ProviderHealthChanged
        parts.append(f"health {payload.get('old')}→{payload.get('new')}")
    if event_type == "JobCreated" and isinstance(payload.get("spec"), dict):
        parts.append(f"command={_short(payload['spec'].get('command'), 60)}")
    if event_type in ("ApiTokenCreated", "ApiTokenRevoked"):
        # "name" and "role" mean other things in other payloads: only a token's.
        parts.extend(f"{k}={_short(payload[k], 80)}" for k in ("name", "role") if payload.get(k))
    for key in _SUMMARY_KEYS:
        value = payload.get(key)
        if value in (None, "", [], {}):
            continue
        if key in ("worker_id", "lost_worker_id") and isinstance(value, str):
            value = value[:8]
        parts.append(f"{key}={_short(value, 80)}")
    reasons = payload.get("reasons")
    if isinstance(reasons, dict):  # JobUnschedulable: why each provider was passed over
        parts.append("; ".join(f"{k}: {v}" for k, v in reasons.items()) or "no providers")
    return " ".join(parts)


def _short(value: object, width: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"
