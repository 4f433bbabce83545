"""Maintenance tasks on ``hodei.control``, scheduled by beat and runnable once with
``hodei maintenance run``. Each returns a small report and logs what it did."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery, Task

from hodei.domain.states import ProviderHealth
from hodei.errors import DatabaseUnavailable, HodeiError, InvalidConfiguration
from hodei.services import gates, maintenance
from hodei.services.dispatch import dispatch_pending
from hodei.services.provisioning import provision
from hodei.store import outage

if TYPE_CHECKING:  # the type only: the entry point hands the container over
    from hodei.bootstrap import Container

logger = logging.getLogger(__name__)

Report = dict[str, Any]

_container: Container | None = None


def use_container(container: Container) -> None:
    """Run the tasks of this process against ``container`` (``hodei scheduler`` sets it)."""
    global _container
    _container = container


def _current(app: Celery) -> Container:
    """The container set by ``use_container``, else the one whose app runs the task."""
    container = _container or getattr(app, "hodei_container", None)
    if container is None:
        raise InvalidConfiguration(
            "maintenance tasks run on the app of a hodei Container (hodei scheduler)"
        )
    return container


def run_dispatch_pending(c: Container) -> Report:
    published = dispatch_pending(
        c.store, c.clock, c.publisher, republish_after_s=c.settings.republish_after_s
    )
    return {"published": published}


def run_release_gated(c: Container) -> Report:
    """Held jobs whose gates are open (due, dependencies ended, a free slot of their
    key): released and published, or cancelled for a failed dependency."""
    done = gates.release_due(c.store, c.clock, c.publisher)
    return {
        "released": [str(j.id) for j in done.released],
        "cancelled": [str(j.id) for j in done.cancelled],
    }


def run_reap_stale_workers(c: Container) -> Report:
    back = outage.DATABASE.reachable_for()
    if back is not None and back < c.settings.worker_stale_after_s:
        # After an outage every heartbeat is old: a worker that lived through it gets a
        # whole window to beat again (and write the outcomes it kept) before it counts
        # as lost, or a job that ran once would run again.
        logger.info("reap_stale_workers waits: the database answers again since %.0f s", back)
        return {"lost_workers": [], "requeued": [], "failed": [], "deferred_s": round(back, 1)}
    report = maintenance.reap_stale_workers(
        c.store,
        c.clock,
        c.publisher,
        stale_after_s=c.settings.worker_stale_after_s,
        lost_requeues=c.settings.worker_lost_requeues,
    )
    for worker in report.lost_workers:
        _destroy(c, worker)
    return {
        "lost_workers": [str(w.id) for w in report.lost_workers],
        "requeued": [str(j.id) for j in report.requeued],
        "failed": [str(j.id) for j in report.failed],
    }


def run_expire_tokens(c: Container) -> Report:
    failed = maintenance.expire_tokens(c.store, c.clock)
    for worker in failed:
        _destroy(c, worker)
    return {"provision_failed": [str(w.id) for w in failed]}


def run_enforce_deadlines(c: Container) -> Report:
    ended = maintenance.enforce_deadlines(c.store, c.clock, grace_s=c.settings.cancel_grace_s)
    return {"timed_out": [str(j.id) for j in ended]}


def run_purge(c: Container) -> Report:
    return {
        "purged_jobs": maintenance.purge(c.store, c.clock, retention_days=c.settings.retention_days)
    }


def run_provision(c: Container) -> Report:
    with c.store.transaction() as tx:
        names = [p.name for p in tx.providers.search()]
    launched = {}
    for name in names:
        tokens = provision(
            c.store,
            c.clock,
            c.launcher_for,
            name,
            token_ttl_s=c.settings.token_ttl_s,
            environment={},
            stale_after_s=c.settings.worker_stale_after_s,
        )
        if tokens:
            launched[name] = len(tokens)
    return {"launched": launched}


def run_check_provider_health(c: Container) -> Report:
    """Check each provider whose own health_check interval has passed."""
    from hodei.providers.factory import probe_for
    from hodei.services.health import check_providers

    results = check_providers(
        c.store, c.clock, lambda p: probe_for(p, c.settings, c.store, c.clock)
    )
    return {name: str(r.health) for name, r in results.items()}


def run_reconcile_providers(c: Container) -> Report:
    """Docker and Kubernetes providers: containers or pods versus worker rows."""
    from hodei.providers.factory import adapter_for
    from hodei.services.health import HealthReport, record_health
    from hodei.services.reconcile import reconcile_provider

    with c.store.transaction() as tx:
        providers = [p for p in tx.providers.search() if p.provider_type != "local"]
    out: Report = {}
    for provider in providers:
        try:
            adapter = adapter_for(provider, c.settings, c.store, c.clock)
            report = reconcile_provider(
                c.store,
                c.clock,
                c.publisher,
                provider,
                adapter,
                lost_requeues=c.settings.worker_lost_requeues,
            )
        except HodeiError as exc:  # one unreachable provider must not stop the others
            # UNHEALTHY with the reason: no launches on it, and diagnose names it. Logged
            # as a warning on the change only, not on every pass.
            record_health(
                c.store, c.clock, provider.name, HealthReport(ProviderHealth.UNHEALTHY, str(exc))
            )
            logger.debug("could not reconcile provider %s: %s", provider.name, exc)
            out[provider.name] = {"error": str(exc)}
            continue
        out[provider.name] = {
            "removed": report.removed,
            "lost": [str(w) for w in report.lost],
            "provision_failed": [str(w) for w in report.provision_failed],
            "events": report.events,
        }
    return out


def run_reschedule_unschedulable(c: Container) -> Report:
    """PENDING jobs with no provider: match again, or fail after HODEI_QUEUE_TIMEOUT."""
    from hodei.services.reconcile import reschedule_unschedulable

    report = reschedule_unschedulable(
        c.store, c.clock, c.publisher, queue_timeout_s=c.settings.queue_timeout_s
    )
    return {
        "scheduled": [str(j) for j in report.scheduled],
        "failed": [str(j) for j in report.failed],
    }


def _destroy(c: Container, worker: Any) -> None:
    with c.store.transaction() as tx:
        provider = tx.providers.get(worker.provider_id) if worker.provider_id else None
    if provider is None:
        return
    try:
        c.launcher_for(provider).destroy(worker)
    except Exception:  # a cleanup failure must not stop the reaper
        logger.exception(
            "could not remove worker %s", worker.id, extra={"worker_id": str(worker.id)}
        )


def run_fold_state_counts(c: Container) -> Report:
    # The tally is append-only (+1/-1 per state change); compacting it keeps status fast.
    return {"folded_rows": c.reads.fold_state_counts()}


TASKS: dict[str, Callable[[Container], Report]] = {
    "dispatch_pending": run_dispatch_pending,
    "release_gated": run_release_gated,
    "reap_stale_workers": run_reap_stale_workers,
    "expire_tokens": run_expire_tokens,
    "enforce_deadlines": run_enforce_deadlines,
    "purge": run_purge,
    "fold_state_counts": run_fold_state_counts,
    "provision": run_provision,
    "check_provider_health": run_check_provider_health,
    "reconcile_providers": run_reconcile_providers,
    "reschedule_unschedulable": run_reschedule_unschedulable,
}


def register(app: Celery) -> None:
    for name, fn in TASKS.items():
        # shared=False: these belong to this app; a shared task would be added to every
        # app the process creates later, ahead of that app's own registration.
        app.task(name=f"hodei.{name}", ignore_result=True, shared=False, base=MaintenanceTask)(
            _as_task(name, fn, app)
        )


class _NoEvents:
    """An event dispatcher that publishes nothing (Celery calls only ``publish``)."""

    def publish(self, *_: Any, **__: Any) -> None:
        return None


_NO_EVENTS = _NoEvents()


class MaintenanceTask(Task):  # type: ignore[misc]  # celery is untyped
    """A maintenance task sends no task events: beat runs one every few seconds, and in
    Flower they buried the users' jobs (23 of 24 tasks). Each task logs its report, and
    ``hodei maintenance run`` prints it."""

    # No task-received/started/succeeded/failed from the worker that runs it (Celery's
    # per-task switch, on top of the worker's task events).
    send_events = False

    def apply_async(self, *args: Any, **options: Any) -> Any:
        # No task-sent from beat: Celery publishes it through this dispatcher.
        options.setdefault("event_dispatcher", _NO_EVENTS)
        return super().apply_async(*args, **options)


def _as_task(name: str, fn: Callable[[Container], Report], app: Celery) -> Callable[[], Report]:
    def task() -> Report:
        try:
            report = fn(_current(app))
        except DatabaseUnavailable as exc:
            # Beat runs it again soon; the outage is logged once (hodei.store.outage).
            logger.debug("maintenance %s skipped: %s", name, exc)
            return {"skipped": str(exc)}
        logger.info("maintenance %s: %s", name, report)
        return report

    task.__name__ = name
    return task
