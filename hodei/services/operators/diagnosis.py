"""``hodei job diagnose``: five diagnostic steps, run for one job (docs/troubleshooting.md).

1. state and attempts; 2. whether it is queued, and where; 3. which providers match
and why the others do not; 4. the live workers on its queue and their heartbeat ages;
5. its last events. Then a verdict and the action that fixes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from uuid import UUID

from hodei.domain.selection import Candidate, Requirements, select_provider
from hodei.domain.states import JobState, WorkerState
from hodei.errors import JobNotFound
from hodei.services.operators.events_feed import summarize
from hodei.services.operators.verdicts import Facts, Verdict, age, clock_time, is_stale, verdict_for
from hodei.services.ports.clock import Clock
from hodei.services.ports.reads import ReadStore
from hodei.services.ports.store import EventQuery

LAST_EVENTS = 8


@dataclass(frozen=True)
class Step:
    title: str
    lines: list[str]


@dataclass(frozen=True)
class Diagnosis:
    job_id: UUID
    state: str
    code: str  # machine-readable verdict: succeeded, no_provider, stale_worker, ...
    verdict: str
    action: str
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "state": self.state,
            "code": self.code,
            "verdict": self.verdict,
            "action": self.action,
            "steps": [{"title": s.title, "lines": s.lines} for s in self.steps],
        }


def diagnose_job(
    reads: ReadStore,
    clock: Clock,
    job_id: UUID,
    *,
    stale_after_s: float,
    republish_after_s: float = 300.0,
    token_ttl_s: float = 300.0,
) -> Diagnosis:
    """Read what matters about the job and explain where it stands."""
    facts = _gather(reads, clock, job_id, timedelta(seconds=stale_after_s))
    facts = replace(
        facts,
        republish_after=timedelta(seconds=republish_after_s),
        token_ttl=timedelta(seconds=token_ttl_s),
    )
    verdict: Verdict = verdict_for(facts)
    return Diagnosis(
        job_id=facts.job.id,
        state=str(facts.job.state),
        code=verdict.code,
        verdict=verdict.text,
        action=verdict.action,
        steps=[
            Step("1. State and attempts", _state_lines(facts)),
            Step("2. Queue", _queue_lines(facts)),
            Step("3. Providers", _provider_lines(facts)),
            Step(f"4. Workers on {facts.job.queue or 'its queue'}", _worker_lines(facts)),
            Step("5. Last events", _event_lines(facts)),
        ],
    )


def _gather(reads: ReadStore, clock: Clock, job_id: UUID, stale_after: timedelta) -> Facts:
    now = clock.now()
    with reads.read() as r:
        job = r.job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        providers = r.providers()
        counts: Counter[UUID | None] = Counter()
        for (provider_id, _state), n in r.live_worker_counts().items():
            counts[provider_id] += n
        newest = r.events(EventQuery(aggregate_ids=[job.id], limit=LAST_EVENTS, newest_first=True))
        return Facts(
            now=now,
            job=job,
            attempts=r.attempts(job.id),
            providers=providers,
            selection=select_provider(
                Requirements(job.spec.labels, job.spec.regions, job.spec.provider),
                [Candidate(p, counts.get(p.id, 0)) for p in providers],
            ),
            queue_workers=r.live_workers(queue=job.queue) if job.queue else [],
            job_worker=r.worker(job.worker_id) if job.worker_id else None,
            position=r.queue_position(job) if job.state is JobState.QUEUED else 0,
            last_events=list(reversed(newest)),
            stale_after=stale_after,
            launch_failures=r.launch_failures([job.id]) if not job.is_terminal else [],
            dependencies=r.dependencies(job.id) if job.spec.after else {},
            key_active=r.active_with_key(job.concurrency_key) if job.concurrency_key else 0,
            higher_priority=(
                r.queued_with_higher_priority(job) if job.state is JobState.QUEUED else 0
            ),
        )


def _state_lines(f: Facts) -> list[str]:
    job = f.job
    created = age(job.created_at, f.now)
    lines = [f"{job.state}, attempt {job.attempt} of {job.max_attempts}, created {created}"]
    if job.failure_reason or job.error:
        lines.append(f"failure: {job.failure_reason or '-'} {job.error or ''}".rstrip())
    if not job.held:
        lines.extend(_gate_lines(f))
    for a in f.attempts:
        worker = f" on worker {str(a.worker_id)[:8]}" if a.worker_id else ""
        code = f" exit {a.exit_code}" if a.exit_code is not None else ""
        error = f" ({a.error})" if a.error else ""
        lines.append(f"attempt {a.attempt_no}: {a.state}{code}{worker}{error}")
    return lines


def _gate_lines(f: Facts) -> list[str]:
    """What the job was submitted to wait for, and where each of those stands."""
    spec, lines = f.job.spec, []
    if spec.priority != 5:
        lines.append(f"priority {spec.priority} (0..9, default 5)")
    if spec.run_at is not None:
        lines.append(f"due at {spec.run_at.isoformat(timespec='seconds')}")
    if spec.after:
        ended = sum(1 for s in f.dependencies.values() if s.is_terminal)
        how = "whatever way they end" if spec.after_any else "each must succeed"
        lines.append(f"runs after {len(spec.after)} job(s), {ended} ended ({how})")
    if spec.concurrency_key is not None:
        lines.append(
            f"concurrency key {spec.concurrency_key!r}: {f.key_active} of "
            f"{spec.max_concurrency or 1} slot(s) taken"
        )
    return lines


def _queue_lines(f: Facts) -> list[str]:
    job = f.job
    if job.state is JobState.PENDING and job.held:
        return ["not queued: held, see its gates below", *_gate_lines(f)]
    if job.state is JobState.QUEUED:
        return [
            f"in job_queue on {job.queue} since {age(job.queued_at, f.now)}; "
            f"{f.position} job(s) queued ahead of it"
        ]
    if job.state is JobState.PENDING:
        if job.queue is None:
            return ["not queued: no provider was chosen for it"]
        if job.next_attempt_at is not None and job.next_attempt_at > f.now:
            return [
                f"not queued: attempt {job.attempt} is due at {clock_time(job.next_attempt_at)}"
            ]
        return [f"not queued: PENDING for {job.queue} since {age(job.updated_at, f.now)}"]
    return [f"not queued: {job.state}"]


def _provider_lines(f: Facts) -> list[str]:
    chosen = f.selection.chosen
    lines = []
    for p in f.providers:
        if chosen is not None and p.name == chosen.name:
            lines.append(f"{p.name}: matches ({f.selection.reason})")
        else:
            why = f.selection.rejected.get(p.name, "not considered")
            lines.append(f"{p.name}: {why}")
    missing = {
        k: v for k, v in f.selection.rejected.items() if k not in {p.name for p in f.providers}
    }
    lines.extend(f"{name}: {why}" for name, why in missing.items())
    return lines or ["no providers are configured"]


def _worker_lines(f: Facts) -> list[str]:
    shown = list(f.queue_workers)
    if f.job_worker is not None and f.job_worker.id not in {w.id for w in shown}:
        shown.append(f.job_worker)
    lines = []
    for w in shown:
        if w.unused_token:
            lines.append(
                f"{str(w.id)[:8]} PROVISIONING: an unused token issued {age(w.created_at, f.now)}"
                " (no process has presented it; it serves nothing)"
            )
            continue
        beat = age(w.last_heartbeat, f.now) if w.last_heartbeat else "none yet"
        stale = w.state is not WorkerState.PROVISIONING and is_stale(w, f)
        note = " (stale)" if stale else ""
        job = f", running {str(w.current_job_id)[:8]}" if w.current_job_id else ""
        lines.append(f"{str(w.id)[:8]} {w.state}, heartbeat {beat}{note}{job}")
    lines.extend(
        f"{str(w.id)[:8]} launched {age(w.created_at, f.now)}, never started: "
        f"{w.termination_reason or '-'}"
        for w in f.launch_failures[:3]
    )
    return lines or [f"no live worker serves {f.job.queue or 'its queue'}"]


def _event_lines(f: Facts) -> list[str]:
    return [
        f"{e.occurred_at.strftime('%H:%M:%S.%f')[:-3]} {e.event_type} by {e.actor}: "
        f"{summarize(e.event_type, e.payload)}".rstrip(": ")
        for e in f.last_events
    ] or ["no events"]
