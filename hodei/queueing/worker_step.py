"""The Celery bootstep that holds a hodei worker's :class:`WorkerContext` in the
worker, instead of a module global (docs/architecture.md, "The worker in Celery").

``hodei worker start`` passes the context to Celery's worker as ``hodei_context``;
this step, built with the worker, keeps it and hangs it on the worker and on the
worker's app (the app ``hodei worker start`` made for itself). The run-job task reaches
it as ``task.app``, the signal handlers through their sender's app: nothing in the
process looks it up globally, and a worker Celery's own CLI starts has none.

It is a plain step, not a StartStopStep: the context lives from the worker's building
to the end of ``hodei worker start``, which writes the outcomes it still keeps after
Celery has stopped; and no step can be ordered to stop after Celery's pool (whose stop
waits for the running tasks), so a stop here could come while a task still needs it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from hodei.runtime.context import WorkerContext

_ATTR = "hodei_worker_context"


class WorkerContextStep(bootsteps.Step):  # type: ignore[misc]  # celery is untyped
    label = "hodei worker context"

    def __init__(self, parent: Any, hodei_context: WorkerContext | None = None, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.context = hodei_context

    def include_if(self, parent: Any) -> bool:
        return self.context is not None

    def create(self, parent: Any) -> None:
        parent.hodei_context = self.context
        setattr(parent.app, _ATTR, self.context)


def install(app: Celery) -> None:
    """Add the step to the workers ``app`` builds (idempotent)."""
    app.steps["worker"].add(WorkerContextStep)


def worker_context(app: Celery | None) -> WorkerContext | None:
    """The context of the hodei worker running ``app``'s tasks; None outside one."""
    context: WorkerContext | None = getattr(app, _ATTR, None)
    return context
