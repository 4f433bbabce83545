"""``hodei status``: the whole system on one screen, cheap on any history size.

Job and worker counts come from the trigger-kept tally (migration 0002), queue depths
from the active jobs only, workers and providers from the live rows: nothing here
grows with the number of finished jobs, events or log lines.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain.states import JobState, WorkerState
from hodei.services.ports.clock import Clock
from hodei.services.ports.reads import QueueDepth, ReadStore

logger = logging.getLogger(__name__)

# Fold the tally when a read had to sum more rows than this (a fold is one statement).
FOLD_THRESHOLD = 5000
NO_PROVIDER = "(no provider)"


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    provider: str
    pending: int
    queued: int
    running: int
    oldest_queued_at: datetime | None
    oldest_queued_age_s: float | None
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class ProviderStatusLine:
    name: str
    provider_type: str
    status: str
    health: str
    health_message: str | None
    health_checked_at: datetime | None
    live_workers: int
    busy_workers: int
    max_workers: int
    queue: str


LEAD_FRESH_S = 15.0
"""A leader that has not renewed its row for this long (three renewals) is not trusted
to be alive: status and doctor say no scheduler leads."""


@dataclass(frozen=True)
class SchedulerLead:
    """The ``hodei scheduler`` that holds the lead, as its row says."""

    holder: str
    since: datetime
    renewed_at: datetime
    renewed_age_s: float
    alive: bool  # renewed within LEAD_FRESH_S


def scheduler_lead(
    found: tuple[str, datetime, datetime] | None, now: datetime
) -> SchedulerLead | None:
    if found is None:
        return None
    holder, since, renewed = found
    age = max((now - renewed).total_seconds(), 0.0)
    return SchedulerLead(holder, since, renewed, round(age, 3), age <= LEAD_FRESH_S)


@dataclass(frozen=True)
class SystemStatus:
    generated_at: datetime
    jobs: dict[str, int]
    workers: dict[str, int]
    queues: list[QueueStatus]
    providers: list[ProviderStatusLine]
    tokens_outstanding: int
    scheduler: SchedulerLead | None = None
    # PENDING jobs held by a gate, by what they wait for (due_time, dependencies,
    # concurrency), and QUEUED jobs behind a higher-priority one (priority).
    waiting: dict[str, int] = field(default_factory=dict)

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        out: dict[str, Any] = _json_ready(asdict(self) | {"total_jobs": self.total_jobs})
        return out


def system_status(reads: ReadStore, clock: Clock) -> SystemStatus:
    """Jobs and workers by state, queues, providers with capacity, tokens outstanding."""
    now = clock.now()
    with reads.read() as r:
        counts = r.state_counts()
        depths = r.queue_depths()
        providers = r.providers()
        live = r.live_worker_counts()
        tokens = r.tokens_outstanding(now)
        unfolded = r.tally_rows()
        leader = r.scheduler_leader()
        waiting = {**r.held_counts(), "priority": r.queued_behind_priority()}
    if unfolded > FOLD_THRESHOLD:
        folded = reads.fold_state_counts()
        logger.debug("folded %d state count rows", folded)
    by_provider: Counter[UUID | None] = Counter()
    busy: Counter[UUID | None] = Counter()
    for (provider_id, state), n in live.items():
        by_provider[provider_id] += n
        if state == WorkerState.BUSY:
            busy[provider_id] += n
    names = {p.queue: p.name for p in providers}
    return SystemStatus(
        generated_at=now,
        jobs=_zero_filled(counts.get("job", {}), [s.value for s in JobState]),
        workers=_zero_filled(counts.get("worker", {}), [s.value for s in WorkerState]),
        queues=[_queue_status(d, names, now) for d in sorted(depths, key=lambda d: d.queue)],
        providers=[
            ProviderStatusLine(
                name=p.name,
                provider_type=p.provider_type,
                status=str(p.status),
                health=str(p.health),
                health_message=p.health_message,
                health_checked_at=p.health_checked_at,
                live_workers=by_provider.get(p.id, 0),
                busy_workers=busy.get(p.id, 0),
                max_workers=p.max_workers,
                queue=p.queue,
            )
            for p in providers
        ],
        tokens_outstanding=tokens,
        scheduler=scheduler_lead(leader, now),
        waiting=_zero_filled(waiting, ["due_time", "dependencies", "concurrency", "priority"]),
    )


def _queue_status(depth: QueueDepth, names: dict[str, str], now: datetime) -> QueueStatus:
    oldest = depth.oldest_queued_at
    return QueueStatus(
        queue=depth.queue or "-",
        provider=names.get(depth.queue, NO_PROVIDER if not depth.queue else "?"),
        pending=depth.pending,
        queued=depth.queued,
        running=depth.running,
        oldest_queued_at=oldest,
        oldest_queued_age_s=round((now - oldest).total_seconds(), 3) if oldest else None,
        oldest_pending_at=depth.oldest_pending_at,
    )


def _zero_filled(counts: dict[str, int], states: list[str]) -> dict[str, int]:
    out = {s: max(counts.get(s, 0), 0) for s in states}
    out.update({s: n for s, n in counts.items() if s not in out and n})
    return out


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value
