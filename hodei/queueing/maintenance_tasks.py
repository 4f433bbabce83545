"""Maintenance tasks on ``hodei.control``, scheduled by beat and runnable once with
``hodei maintenance run``. Each returns a small report and logs what it did."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery, Task

from hodei.core import MAINTENANCE_TASKS, Report
from hodei.errors import DatabaseUnavailable, InvalidConfiguration

if TYPE_CHECKING:  # the type only: the entry point hands the container over
    from hodei.bootstrap import Container

logger = logging.getLogger(__name__)


def _current(app: Celery) -> Container:
    """The container whose app runs the task (``create_app`` hands it over)."""
    container: Container | None = getattr(app, "hodei_container", None)
    if container is None:
        raise InvalidConfiguration(
            "maintenance tasks run on the app of a hodei Container (hodei scheduler)"
        )
    return container


def _by_name(name: str) -> Callable[[Container], Report]:
    def run(c: Container) -> Report:
        return c.hodei.maintenance(name)

    run.__name__ = f"run_{name}"
    return run


# The tasks are the facade's (hodei.core.Hodei.maintenance); here they become Celery
# tasks of the container's app, and `hodei maintenance run` calls them by name.
TASKS: dict[str, Callable[[Container], Report]] = {
    name: _by_name(name) for name in MAINTENANCE_TASKS
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
