"""Submitting jobs: validate, choose a provider, store with JobCreated, then publish."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from hodei.domain.event_builders import job_event
from hodei.domain.events import Actor, DomainEvent, EventType
from hodei.domain.records import Job
from hodei.domain.selection import Requirements, Selection, select_provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import DuplicateIdempotencyKey, InvalidJobSpec, ProviderNotFound
from hodei.services.jobs import gates
from hodei.services.jobs.dispatch import publish_jobs
from hodei.services.jobs.job_ids import whole_after_ids
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    """A submitted job; ``existing`` when its idempotency key matched an earlier job."""

    job: Job
    existing: bool = False
    published: bool = False
    reason: str = ""
    # The chosen provider, when it had room for more workers at submit time: only then
    # can provisioning launch one, so a provider at capacity is not asked.
    may_scale: str | None = None


def submit_jobs(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    specs: Sequence[JobSpec],
    *,
    actor: str,
) -> list[Submitted]:
    """Store every job in one transaction, then publish them over one connection.

    A spec whose idempotency key is already stored returns that job instead. A spec
    not built by :meth:`JobSpec.create` is validated first; one that names a provider
    that does not exist is refused (:class:`ProviderNotFound`), and nothing is stored.
    """
    specs = [_whole_ids(store, _validated(spec)) for spec in specs]
    try:
        results = _store_jobs(store, clock, specs, actor)
    except DuplicateIdempotencyKey:
        # A concurrent submit stored the same key first: now it is visible, so reuse it.
        results = _store_jobs(store, clock, specs, actor)
    new_jobs = [r.job for r in results if not r.existing and not r.job.held]
    reasons = {r.job.id: r.reason for r in results}
    failed = {j.id for j in publish_jobs(store, clock, publisher, new_jobs, reasons)}
    held = [r.job for r in results if not r.existing and r.job.held]
    # A held job whose gates are open already (its dependencies ended, its key has a
    # free slot) goes now; the others wait for what they wait for.
    released = {j.id: j for j in gates.release_jobs(store, clock, publisher, held).released}
    return [
        r
        if r.existing
        else replace(r, job=released[r.job.id], published=True)
        if r.job.id in released
        else replace(
            r, published=r.job.queue is not None and not r.job.held and r.job.id not in failed
        )
        for r in results
    ]


def _validated(spec: object) -> JobSpec:
    if not isinstance(spec, JobSpec):
        raise InvalidJobSpec(f"invalid job: expected a JobSpec, got {type(spec).__name__}")
    return spec.validated()


def _whole_ids(store: Store, spec: JobSpec) -> JobSpec:
    """The spec with the id prefixes of its ``after`` replaced by whole job ids, so what
    is stored (and shown) names each job in full."""
    if not any(isinstance(a, str) for a in spec.after):
        return spec
    return replace(spec, after=whole_after_ids(store, spec.after))


def _store_jobs(
    store: Store, clock: Clock, specs: Sequence[JobSpec], actor: str
) -> list[Submitted]:
    """Store the new jobs with their events: a single job as one write of its own (no
    transaction around it on PostgreSQL), several in one transaction."""
    now = clock.now()
    results: list[Submitted] = []
    seen: dict[str, Job] = {}
    ids = [uuid.uuid4() for _ in specs]
    # Checked before anything is stored: an index outside the batch, a cycle.
    dependencies = gates.resolve_after(specs, ids) if any(s.after for s in specs) else []
    if dependencies:
        # Stored with the batch's job ids in place of its indices.
        specs = [_with_ids(spec, ids) for spec in specs]
    single = len(specs) == 1 and not dependencies
    with store.single_write() if single else store.transaction() as tx:
        candidates = tx.providers.search_with_live_workers()
        live = {c.provider.id: c.live_workers for c in candidates}
        names = {c.provider.name for c in candidates}
        new_jobs: list[Job] = []
        events = []
        for job_id, spec in zip(ids, specs, strict=True):
            key = spec.idempotency_key
            existing = seen.get(key) if key else None
            existing = existing or (tx.jobs.get_by_idempotency_key(key) if key else None)
            if existing is not None:
                results.append(Submitted(existing, existing=True))
                continue
            if spec.provider is not None and spec.provider not in names:
                # It could never run: say so now rather than leave it PENDING.
                raise ProviderNotFound(
                    f"no provider named {spec.provider!r} (`hodei provider list` shows them)"
                )
            selection = select_provider(
                Requirements(spec.labels, spec.regions, spec.provider), candidates
            )
            job = _new_job(job_id, spec, selection, actor, now)
            events.extend(_creation_events(job, selection, actor))
            if job.held:
                events.append(gates.held_event(job, actor=actor))
            new_jobs.append(job)
            if key:
                seen[key] = job
            chosen = selection.chosen
            may_scale = (
                chosen.name if chosen and live.get(chosen.id, 0) < chosen.max_workers else None
            )
            results.append(Submitted(job, reason=selection.reason, may_scale=may_scale))
        if dependencies:
            stored = {j.id for j in new_jobs}
            # A job returned by its idempotency key is not stored again, nor are its pairs.
            dependencies = [(j, d) for j, d in dependencies if j in stored]
            gates.check_known(tx, dependencies, set(ids))
            by_id = {j.id: j for j in new_jobs}
            missing = {d for _, d in dependencies if d in set(ids) and d not in by_id}
            if missing:
                raise InvalidJobSpec(
                    "invalid job: a job of this batch runs after one that its idempotency "
                    "key made an earlier job; name that job's id instead"
                )
        if single and new_jobs:
            tx.jobs.create(new_jobs[0], events)
        else:
            tx.jobs.add(*new_jobs)
            tx.events.add(*events)
            tx.gates.add_dependencies(dependencies)
    return results


def _new_job(job_id: UUID, spec: JobSpec, selection: Selection, actor: str, now: datetime) -> Job:
    provider = selection.chosen
    return Job(
        id=job_id,
        name=spec.name,
        state=JobState.PENDING,
        spec=spec,
        created_at=now,
        updated_at=now,
        attempt=1,
        max_attempts=spec.max_attempts,
        provider_id=provider.id if provider else None,
        queue=provider.queue if provider else None,
        correlation_id=spec.correlation_id,
        idempotency_key=spec.idempotency_key,
        submitted_by=actor,
        held=spec.gated,
        hold_until=gates.hold_until(spec, now),
        priority=spec.priority,
        concurrency_key=spec.concurrency_key,
        max_concurrency=spec.max_concurrency,
    )


def _with_ids(spec: JobSpec, ids: Sequence[UUID]) -> JobSpec:
    if not any(isinstance(a, int) for a in spec.after):
        return spec
    after = tuple(ids[a] if isinstance(a, int) else a for a in spec.after)
    return replace(spec, after=tuple(dict.fromkeys(after)))


def _creation_events(job: Job, selection: Selection, actor: str) -> list[DomainEvent]:
    now = job.created_at
    events = [
        job_event(
            job,
            EventType.JOB_CREATED,
            actor=actor,
            now=now,
            new_state=JobState.PENDING,
            old_state=None,
            spec=job.spec.summary(),
            provider=selection.chosen.name if selection.chosen else None,
            selection=selection.reason,
        )
    ]
    if selection.chosen is None:
        # INFO, not WARNING: the caller is told (the job comes back PENDING, its
        # JobUnschedulable event says why, `job submit`/`job run` print it in one line);
        # a WARNING showed up in the CLI's output as a second, timestamped line.
        logger.info(
            "No available providers for job %s",
            job.id,
            extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
        )
        events.append(
            job_event(
                job,
                EventType.JOB_UNSCHEDULABLE,
                actor=Actor.DISPATCHER,
                now=now,
                reasons=selection.rejected,
            )
        )
    else:
        logger.info(
            "Selected provider %s for job %s",
            selection.chosen.name,
            job.id,
            extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
        )
    return events
