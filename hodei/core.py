"""The facade: hodei's use cases composed, in one place (issue 17, step 4).

:class:`Hodei` is what an entry point calls: the SDK's local backend (and through it
the CLI and the API server), and the maintenance tasks that beat and ``hodei
maintenance run`` start by name. Each method is one thing a caller asks for,
including what has to follow it (a submit launches workers for the work it stored; a
provider change reschedules the jobs that waited for one, then launches workers), so
no caller orchestrates use cases itself.

It reaches the world only through the ports, given as a :class:`Wiring` (the
``Container`` of ``hodei.bootstrap``, or ``hodei.testing.FakeWiring``), which it
reads lazily: a ``job cancel`` builds no Celery app, since it publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from hodei.domain.records import Job, Provider, Worker
from hodei.domain.specs import JobSpec
from hodei.domain.states import ProviderHealth, ProviderStatus
from hodei.errors import HodeiError, InvalidInput
from hodei.services.fleet.provider_health import check_providers, record_health
from hodei.services.fleet.provider_registry import set_provider_status
from hodei.services.fleet.provisioning import provision
from hodei.services.jobs import gates
from hodei.services.jobs.cancel_retry import cancel_job, retry_job
from hodei.services.jobs.dispatch import dispatch_pending
from hodei.services.jobs.submission import submit_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.providers import HealthProbe, HealthReport, WorkerLauncher
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store
from hodei.settings import Settings

if TYPE_CHECKING:
    from hodei.services.jobs.attempts import Claim, Outcome
    from hodei.services.ports.providers import InfrastructureInspector

# What only the worker, a provider change, a schedule or maintenance needs is imported
# where it is used: `hodei job run` loads the facade for its submit (import time,
# docs/performance.md).

logger = logging.getLogger(__name__)

__all__ = ["MAINTENANCE_TASKS", "Hodei", "Report", "Wiring"]


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

    @property
    def reads(self) -> StateTally: ...

    def probe_for(self, provider: Provider) -> HealthProbe:
        """The health check of ``provider``'s type."""
        ...

    def inspector_for(self, provider: Provider) -> InfrastructureInspector:
        """What lists and removes a Docker or Kubernetes provider's containers or pods."""
        ...

    def database_back_for(self) -> float | None:
        """Seconds since the database answers again after an outage this process saw,
        else None."""
        ...


class StateTally(Protocol):
    def fold_state_counts(self) -> int:
        """Collapse the status tally; returns the rows folded away."""
        ...


Report = dict[str, Any]


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
        self.provision_providers({job.provider_id})
        return job

    def release_due(self, jobs: Iterable[Job]) -> list[Job]:
        """Those of ``jobs`` whose gates are open now, released, with workers for them."""
        w = self._w
        released = gates.release_jobs(w.store, w.clock, w.publisher, jobs).released
        if released:
            self.provision_providers({j.provider_id for j in released})
        return list(released)

    def retry(self, job_id: UUID, *, actor: str) -> Job:
        """A new attempt of a failed, timed-out or cancelled job, with a worker for it."""
        w = self._w
        job = retry_job(w.store, w.clock, w.publisher, job_id, actor=actor)
        self.provision_providers({job.provider_id})
        return job

    def trigger_schedule(self, name: str, *, actor: str) -> Job:
        """Fire a schedule now: its job, with a worker for it."""
        from hodei.services.jobs.schedules import trigger_schedule

        w = self._w
        job = trigger_schedule(w.store, w.clock, w.publisher, name, actor=actor)
        self.provision_providers({job.provider_id})
        return job

    # -- an attempt, inside a worker ----------------------------------------------

    def claim(self, *, job_id: UUID, attempt: int, worker_id: UUID, task_id: str) -> Claim:
        """QUEUED -> RUNNING for this delivery, or why it must not run."""
        from hodei.services.jobs.attempts import claim_attempt

        w = self._w
        return claim_attempt(
            w.store, w.clock, job_id=job_id, attempt=attempt, worker_id=worker_id, task_id=task_id
        )

    def finish(self, claimed: Job, *, worker_id: UUID, outcome: Outcome) -> Job | None:
        """Record how the attempt ended, then what follows (a retry due now published,
        the jobs that waited for this one released). The job as it is after; None if
        the attempt was no longer this worker's. Raises (the database is
        unavailable...) only when the outcome was not written."""
        from hodei.services.jobs.attempts import finish_attempt

        w = self._w
        job = finish_attempt(w.store, w.clock, job=claimed, worker_id=worker_id, outcome=outcome)
        if job is not None:
            self._after_finish(job, worker_id)
        return job

    def finish_for(self, worker: Worker, *, job_id: UUID, attempt: int, outcome: Outcome) -> Job:
        """:meth:`finish` for an API-mode worker (``hodei server``'s /v1/worker routes):
        of the attempt ``worker`` runs, read as stored rather than taken from the caller;
        Forbidden, recorded, if it is not (any more) that worker's."""
        from hodei.services.fleet.worker_access import finish_as

        w = self._w
        job = finish_as(w.store, w.clock, worker, job_id=job_id, attempt=attempt, outcome=outcome)
        self._after_finish(job, worker.id)
        return job

    def _after_finish(self, job: Job, worker_id: UUID) -> None:
        from hodei.services.jobs.after_finish import after_finish

        w = self._w
        after_finish(
            w.store,
            w.clock,
            w.publisher,
            job,
            worker_id=str(worker_id),
            correlation_id=job.correlation_id,
        )

    # -- providers ----------------------------------------------------------------

    def set_provider_status(self, name: str, status: ProviderStatus, *, actor: str) -> Provider:
        provider = set_provider_status(self._w.store, self._w.clock, name, status, actor=actor)
        self.providers_changed()
        return provider

    def providers_changed(self) -> None:
        """Jobs left PENDING for want of a provider may have one now, and jobs queued on
        a provider that could not launch workers may get them."""
        from hodei.services.fleet.reconcile import reschedule_unschedulable

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
        for name in sorted(set(names)):
            try:
                self._launch(name)
            except HodeiError as exc:
                logger.warning("could not provision workers for %s: %s", name, exc)

    def _launch(self, name: str) -> int:
        w = self._w
        tokens = provision(
            w.store,
            w.clock,
            w.launcher_for,
            name,
            token_ttl_s=w.settings.token_ttl_s,
            environment={},
            stale_after_s=w.settings.worker_stale_after_s,
        )
        return len(tokens)

    def provision_providers(self, provider_ids: Collection[UUID | None]) -> None:
        """:meth:`provision` for providers named by id (a waiter tending its job)."""
        with self._w.store.reading() as tx:
            names = {p.name for p in tx.providers.search() if p.id in provider_ids}
        self.provision(names)

    # -- maintenance --------------------------------------------------------------

    def maintenance(self, name: str) -> Report:
        """Run the maintenance task ``name`` (one of :data:`MAINTENANCE_TASKS`) once;
        a small report of what it did."""
        task = _MAINTENANCE.get(name)
        if task is None:
            raise InvalidInput(f"unknown maintenance task {name!r}")
        return task(self)

    def _dispatch_pending(self) -> Report:
        w = self._w
        published = dispatch_pending(
            w.store, w.clock, w.publisher, republish_after_s=w.settings.republish_after_s
        )
        return {"published": published}

    def _release_gated(self) -> Report:
        """Held jobs whose gates are open (due, dependencies ended, a free slot of their
        key): released and published, or cancelled for a failed dependency."""
        done = gates.release_due(self._w.store, self._w.clock, self._w.publisher)
        return {
            "released": [str(j.id) for j in done.released],
            "cancelled": [str(j.id) for j in done.cancelled],
        }

    def reap_stale_workers(self, provider_ids: Collection[UUID | None] | None = None) -> Report:
        """Silent workers LOST (of ``provider_ids`` only, if given), their jobs recovered
        and their remains removed: beat's task, and a waiter's for its job's provider."""
        from hodei.services import maintenance

        w = self._w
        back = w.database_back_for()
        if back is not None and back < w.settings.worker_stale_after_s:
            # After an outage every heartbeat is old: a worker that lived through it gets
            # a whole window to beat again (and write the outcomes it kept) before it
            # counts as lost, or a job that ran once would run again.
            logger.info("reap_stale_workers waits: the database answers again since %.0f s", back)
            return {"lost_workers": [], "requeued": [], "failed": [], "deferred_s": round(back, 1)}
        report = maintenance.reap_stale_workers(
            w.store,
            w.clock,
            w.publisher,
            stale_after_s=w.settings.worker_stale_after_s,
            lost_requeues=w.settings.worker_lost_requeues,
            provider_ids=provider_ids,
        )
        for worker in report.lost_workers:
            self._destroy(worker)
        return {
            "lost_workers": [str(x.id) for x in report.lost_workers],
            "requeued": [str(j.id) for j in report.requeued],
            "failed": [str(j.id) for j in report.failed],
        }

    def _expire_tokens(self) -> Report:
        from hodei.services import maintenance

        failed = maintenance.expire_tokens(self._w.store, self._w.clock)
        for worker in failed:
            self._destroy(worker)
        return {"provision_failed": [str(x.id) for x in failed]}

    def _enforce_deadlines(self) -> Report:
        from hodei.services import maintenance

        w = self._w
        ended = maintenance.enforce_deadlines(w.store, w.clock, grace_s=w.settings.cancel_grace_s)
        return {"timed_out": [str(j.id) for j in ended]}

    def _purge(self) -> Report:
        from hodei.services import maintenance

        w = self._w
        return {
            "purged_jobs": maintenance.purge(
                w.store, w.clock, retention_days=w.settings.retention_days
            )
        }

    def _fold_state_counts(self) -> Report:
        # The tally is append-only (+1/-1 per state change); compacting it keeps status fast.
        return {"folded_rows": self._w.reads.fold_state_counts()}

    def _provision(self) -> Report:
        with self._w.store.transaction() as tx:
            names = [p.name for p in tx.providers.search()]
        return {"launched": {name: n for name in names if (n := self._launch(name))}}

    def _check_provider_health(self) -> Report:
        """Check each provider whose own health_check interval has passed."""
        w = self._w
        results = check_providers(w.store, w.clock, w.probe_for)
        return {name: str(r.health) for name, r in results.items()}

    def _reconcile_providers(self) -> Report:
        """Docker and Kubernetes providers: containers or pods versus worker rows."""
        from hodei.services.fleet.reconcile import reconcile_provider

        w = self._w
        with w.store.transaction() as tx:
            providers = [p for p in tx.providers.search() if p.provider_type != "local"]
        out: Report = {}
        for provider in providers:
            try:
                report = reconcile_provider(
                    w.store,
                    w.clock,
                    w.publisher,
                    provider,
                    w.inspector_for(provider),
                    lost_requeues=w.settings.worker_lost_requeues,
                )
            except HodeiError as exc:  # one unreachable provider must not stop the others
                # UNHEALTHY with the reason: no launches on it, and diagnose names it.
                # Logged as a warning on the change only, not on every pass.
                unhealthy = HealthReport(ProviderHealth.UNHEALTHY, str(exc))
                record_health(w.store, w.clock, provider.name, unhealthy)
                logger.debug("could not reconcile provider %s: %s", provider.name, exc)
                out[provider.name] = {"error": str(exc)}
                continue
            out[provider.name] = {
                "removed": report.removed,
                "lost": [str(x) for x in report.lost],
                "provision_failed": [str(x) for x in report.provision_failed],
                "events": report.events,
            }
        return out

    def _reschedule_unschedulable(self) -> Report:
        """PENDING jobs with no provider: match again, or fail after HODEI_QUEUE_TIMEOUT."""
        from hodei.services.fleet.reconcile import reschedule_unschedulable

        w = self._w
        report = reschedule_unschedulable(
            w.store, w.clock, w.publisher, queue_timeout_s=w.settings.queue_timeout_s
        )
        return {
            "scheduled": [str(j) for j in report.scheduled],
            "failed": [str(j) for j in report.failed],
        }

    def _destroy(self, worker: Worker) -> None:
        with self._w.store.transaction() as tx:
            provider = tx.providers.get(worker.provider_id) if worker.provider_id else None
        if provider is None:
            return
        try:
            self._w.launcher_for(provider).destroy(worker)
        except Exception:  # a cleanup failure must not stop the reaper
            logger.exception(
                "could not remove worker %s", worker.id, extra={"worker_id": str(worker.id)}
            )


# The maintenance tasks by name, in the order `hodei maintenance run` runs them.
_MAINTENANCE: dict[str, Callable[[Hodei], Report]] = {
    "dispatch_pending": Hodei._dispatch_pending,
    "release_gated": Hodei._release_gated,
    "reap_stale_workers": Hodei.reap_stale_workers,
    "expire_tokens": Hodei._expire_tokens,
    "enforce_deadlines": Hodei._enforce_deadlines,
    "purge": Hodei._purge,
    "fold_state_counts": Hodei._fold_state_counts,
    "provision": Hodei._provision,
    "check_provider_health": Hodei._check_provider_health,
    "reconcile_providers": Hodei._reconcile_providers,
    "reschedule_unschedulable": Hodei._reschedule_unschedulable,
}
MAINTENANCE_TASKS = tuple(_MAINTENANCE)
