"""Putting jobs on the broker: publish after commit, confirm QUEUED, retry what failed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.event_builders import job_event
from hodei.domain.events import Actor, EventType
from hodei.domain.records import Job
from hodei.domain.states import JobState
from hodei.domain.transitions import Transition
from hodei.errors import BrokerUnavailable
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import Publication, TaskPublisher
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)

# A PENDING job younger than this is probably still being published by its submitter.
PUBLISH_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class Confirmation:
    """The broker accepted the message for ``attempt`` of ``job_id``."""

    job_id: UUID
    attempt: int
    task_id: str
    queue: str
    correlation_id: str | None
    reason: str = ""

    @classmethod
    def of(cls, publication: Publication, task_id: str) -> Confirmation:
        return cls(
            publication.job_id,
            publication.attempt,
            task_id,
            publication.queue,
            publication.correlation_id,
            publication.reason,
        )


def publication_for(job: Job, reason: str = "") -> Publication:
    assert job.queue is not None, "only jobs with a provider are published"
    return Publication(
        job.id, job.attempt, job.queue, job.name, reason, job.correlation_id, job.priority
    )


def confirm_queued(store: Store, clock: Clock, confirmations: Sequence[Confirmation]) -> int:
    """PENDING -> QUEUED for each confirmed publication, in one transaction and a few
    set-based statements (a ``submit_many`` of thousands confirms them all at once).

    Conditional on the attempt, so a late confirmation (the worker already claimed,
    or the job was cancelled) changes nothing. Returns how many jobs moved.
    """
    if not confirmations:
        return 0
    by_job = {c.job_id: c for c in confirmations}
    now = clock.now()
    if len(by_job) == 1:  # a submit of one job: one guarded write, no set-based statements
        [single] = by_job.values()
        return int(bool(store.apply(_queue(single, now))))
    with store.transaction() as tx:
        moved = tx.apply_all([_queue(c, now) for c in by_job.values()])
    return len(moved)


def mark_queued(tx: Transaction, clock: Clock, job: Job, task_id: str) -> bool:
    """Within ``tx``: move ``job`` to QUEUED for its current attempt, if it is still PENDING
    (a worker got the message before the publisher confirmed it)."""
    assert job.queue is not None, "only published jobs are queued"
    confirmation = Confirmation(job.id, job.attempt, task_id, job.queue, job.correlation_id)
    return bool(tx.apply(_queue(confirmation, clock.now())))


def _queue(confirmation: Confirmation, now: datetime) -> Transition:
    return transitions.queue(
        confirmation.job_id,
        confirmation.attempt,
        task_id=confirmation.task_id,
        queue=confirmation.queue,
        now=now,
        correlation_id=confirmation.correlation_id,
        reason=confirmation.reason,
    )


def publish_jobs(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    jobs: Sequence[Job],
    reasons: Mapping[UUID, str] | None = None,
) -> list[Job]:
    """Publish committed PENDING jobs over one connection; returns those that failed.

    QUEUED is confirmed by the publisher's after-publish hook; a job whose publish
    fails stays PENDING with a JobPublishFailed event and is retried by dispatch_pending.
    """
    publishable = [j for j in jobs if j.queue is not None]
    if not publishable:
        return []
    done: set[UUID] = set()
    error: BrokerUnavailable | None = None
    try:
        for publication, _task_id in publisher.publish_many(
            [publication_for(j, (reasons or {}).get(j.id, "")) for j in publishable]
        ):
            done.add(publication.job_id)
    except BrokerUnavailable as exc:
        error = exc
    failed = [j for j in publishable if j.id not in done]
    if failed:
        _record_publish_failure(store, clock, failed, str(error or "publish failed"))
    return failed


def _record_publish_failure(store: Store, clock: Clock, jobs: Sequence[Job], error: str) -> None:
    """JobPublishFailed (and a warning) once per outage per job: not again while the
    job's newest event is already one (every idle worker and the scheduler try again
    every second or two while the broker is down; each try is logged at debug)."""
    now = clock.now()
    with store.transaction() as tx:
        newest = tx.events.newest_types([j.id for j in jobs])
        first = [j for j in jobs if newest.get(j.id) != EventType.JOB_PUBLISH_FAILED]
        tx.events.add(
            *(
                job_event(
                    j,
                    EventType.JOB_PUBLISH_FAILED,
                    actor=Actor.DISPATCHER,
                    now=now,
                    attempt=j.attempt,
                    error=error,
                )
                for j in first
            )
        )
    reported = {j.id for j in first}
    for job in jobs:
        logger.log(
            logging.WARNING if job.id in reported else logging.DEBUG,
            "could not publish job %s: %s; it stays PENDING",
            job.id,
            error,
            extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
        )


def dispatch_pending(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    *,
    queue: str | None = None,
    limit: int = 500,
    republish_after_s: float | None = None,
) -> int:
    """Publish PENDING jobs that are due: retries whose time has come, and jobs whose
    first publish failed. With ``republish_after_s``, also publish again the QUEUED
    jobs whose message was most likely lost (see :func:`republish_stranded`).
    Safe to run concurrently: the claim drops duplicates."""
    if republish_after_s is not None:
        republish_stranded(store, clock, publisher, after_s=republish_after_s)
    now = clock.now()
    with store.transaction() as tx:
        due = tx.jobs.due_for_dispatch(
            now=now, created_before=now - PUBLISH_GRACE, limit=limit, queue=queue
        )
    if not due:
        return 0
    reasons = {j.id: "retry due" if j.next_attempt_at else "republished" for j in due}
    failed = publish_jobs(store, clock, publisher, due, reasons)
    published = len(due) - len(failed)
    logger.info("dispatch_pending published %d job(s), %d failed", published, len(failed))
    return published


def republish_stranded(
    store: Store, clock: Clock, publisher: TaskPublisher, *, after_s: float, limit: int = 100
) -> int:
    """Publish again QUEUED jobs that waited ``after_s`` while an idle worker served their
    queue. A message can be lost after delivery and before the claim (a worker killed in
    between; the SQLite transport never redelivers, Redis only after its visibility
    timeout). A duplicate is harmless: the claim lets exactly one delivery run."""
    now = clock.now()
    before = now - timedelta(seconds=after_s)
    with store.transaction() as tx:
        stranded = tx.jobs.stranded_queued(queued_before=before, limit=limit)
        for job in stranded:
            reason = f"queued over {after_s:g}s with an idle worker"
            tx.apply(transitions.republish(job, reason=reason, now=now))
    if not stranded:
        return 0
    logger.warning("republishing %d job(s) whose message was probably lost", len(stranded))
    done = 0
    try:
        for _publication, _task_id in publisher.publish_many(
            [publication_for(j, "republished") for j in stranded]
        ):
            done += 1
    except BrokerUnavailable as exc:
        logger.warning("republish failed: %s", exc)
    return done


def publish_if_due(store: Store, clock: Clock, publisher: TaskPublisher, job: Job) -> None:
    """After a finish: publish the retry it scheduled if it is due now (no backoff);
    later ones wait for :func:`dispatch_pending`. Raises what the publish raises."""
    due = job.next_attempt_at is not None and job.next_attempt_at <= clock.now()
    if job.state is JobState.PENDING and due:
        publish_jobs(store, clock, publisher, [job], {job.id: "retry due"})
