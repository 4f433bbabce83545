"""The facade: hodei's use cases composed, in one place (issue 17, step 4).

:class:`Hodei` is what an entry point calls: the SDK's local backend (and through it
the CLI and the API server), and the worker's Celery signal handlers and task. Each
method is one thing a caller asks for, including what has to follow it (a submit
launches workers for the work it stored; a provider change reschedules the jobs that
waited for one, then launches workers), so no caller orchestrates use cases itself.

It reaches the world only through the ports, given as a :class:`Wiring` (the
``Container`` of ``hodei.bootstrap``, or ``hodei.testing.FakeWiring``), which it
reads lazily: a ``job cancel`` builds no Celery app, since it publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol
from uuid import UUID

from hodei.domain.records import Job, Provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderStatus
from hodei.errors import HodeiError
from hodei.services import gates
from hodei.services.control import cancel_job, retry_job
from hodei.services.dispatch import publish_jobs
from hodei.services.execution import Claim, Outcome, claim_attempt, finish_attempt
from hodei.services.ports import Clock, Store, TaskPublisher, WorkerLauncher
from hodei.services.providers import set_provider_status
from hodei.services.provisioning import provision
from hodei.services.reconcile import reschedule_unschedulable
from hodei.services.schedules import trigger_schedule
from hodei.services.submission import submit_jobs
from hodei.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["Hodei", "Wiring"]


class Wiring(Protocol):
    """The ports the facade runs on, built on first use."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Store: ...

    @property
    def publisher(self) -> TaskPublisher: ...

    def launcher_for(self, provider: Provider) -> WorkerLauncher: ...


class Hodei:
    """Submit, cancel, retry, run an attempt, change providers: each a call."""

    def __init__(self, wiring: Wiring) -> None:
        self._w = wiring

    # -- jobs ---------------------------------------------------------------------

    def submit(self, specs: Sequence[JobSpec], *, actor: str) -> list[Job]:
        """Store and publish ``specs`` (all or none), then launch the workers they need."""
        w = self._w
        results = submit_jobs(w.store, w.clock, w.publisher, specs, actor=actor)
        self.provision({r.may_scale for r in results if r.may_scale})
        return [r.job for r in results]

    def cancel(self, job_id: UUID, *, actor: str) -> Job:
        """Cancel; the jobs that waited for it go on at once (its dependents end
        dependency_failed, the next job of its concurrency key is released)."""
        w = self._w
        return cancel_job(w.store, w.clock, job_id, actor=actor, publisher=w.publisher)

    def release(self, job_id: UUID, *, actor: str) -> Job:
        """An operator's override: a held job published now, with a worker for it."""
        w = self._w
        job = gates.release_now(w.store, w.clock, w.publisher, job_id, actor=actor)
        self._provision_ids({job.provider_id})
        return job

    def release_due(self, jobs: Iterable[Job]) -> list[Job]:
        """Those of ``jobs`` whose gates are open now, released, with workers for them."""
        w = self._w
        released = gates.release_jobs(w.store, w.clock, w.publisher, jobs).released
        if released:
            self._provision_ids({j.provider_id for j in released})
        return list(released)

    def retry(self, job_id: UUID, *, actor: str) -> Job:
        """A new attempt of a failed, timed-out or cancelled job, with a worker for it."""
        w = self._w
        job = retry_job(w.store, w.clock, w.publisher, job_id, actor=actor)
        self._provision_ids({job.provider_id})
        return job

    def trigger_schedule(self, name: str, *, actor: str) -> Job:
        """Fire a schedule now: its job, with a worker for it."""
        w = self._w
        job = trigger_schedule(w.store, w.clock, w.publisher, name, actor=actor)
        self._provision_ids({job.provider_id})
        return job

    # -- an attempt, inside a worker ----------------------------------------------

    def claim(self, *, job_id: UUID, attempt: int, worker_id: UUID, task_id: str) -> Claim:
        """QUEUED -> RUNNING for this delivery, or why it must not run."""
        w = self._w
        return claim_attempt(
            w.store, w.clock, job_id=job_id, attempt=attempt, worker_id=worker_id, task_id=task_id
        )

    def finish(self, claimed: Job, *, worker_id: UUID, outcome: Outcome) -> Job | None:
        """Record how the attempt ended, and publish a retry that is due now. The job as
        it is after; None if the attempt was no longer this worker's. Raises (the
        database is unavailable...) only when the outcome was not written."""
        w = self._w
        job = finish_attempt(w.store, w.clock, job=claimed, worker_id=worker_id, outcome=outcome)
        if job is None:
            return None
        due = job.next_attempt_at is not None and job.next_attempt_at <= w.clock.now()
        if job.state is JobState.PENDING and due:
            # A retry with no backoff goes out now; later ones wait for the dispatcher.
            try:
                publish_jobs(w.store, w.clock, w.publisher, [job], {job.id: "retry due"})
            except HodeiError as exc:  # dispatch_pending publishes it later
                logger.warning(
                    "retry of job %s not published now: %s",
                    job.id,
                    exc,
                    extra={"job_id": str(job.id), "correlation_id": job.correlation_id},
                )
        return job

    # -- providers ----------------------------------------------------------------

    def set_provider_status(self, name: str, status: ProviderStatus, *, actor: str) -> Provider:
        provider = set_provider_status(self._w.store, self._w.clock, name, status, actor=actor)
        self.providers_changed()
        return provider

    def providers_changed(self) -> None:
        """Jobs left PENDING for want of a provider may have one now, and jobs queued on
        a provider that could not launch workers may get them."""
        w = self._w
        reschedule_unschedulable(
            w.store, w.clock, w.publisher, queue_timeout_s=w.settings.queue_timeout_s
        )
        # Every provider: one enabled, healthy again or given capacity launches workers
        # for the jobs already queued on it (provisioning does nothing where none wait).
        with w.store.reading() as tx:
            names = {p.name for p in tx.providers.search()}
        self.provision(names)

    def provision(self, names: Iterable[str]) -> None:
        """Launch the workers the named providers' waiting jobs need; a provider that
        cannot launch is logged, not raised (its jobs wait, and diagnose says why)."""
        w = self._w
        for name in sorted(set(names)):
            try:
                provision(
                    w.store,
                    w.clock,
                    w.launcher_for,
                    name,
                    token_ttl_s=w.settings.token_ttl_s,
                    environment={},
                    stale_after_s=w.settings.worker_stale_after_s,
                )
            except HodeiError as exc:
                logger.warning("could not provision workers for %s: %s", name, exc)

    def _provision_ids(self, provider_ids: Collection[UUID | None]) -> None:
        with self._w.store.reading() as tx:
            names = {p.name for p in tx.providers.search() if p.id in provider_ids}
        self.provision(names)
