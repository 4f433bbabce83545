"""The worker's context is held by the Celery worker built for it, reached through that
worker's app: never a process-wide value another app (or a second worker) would see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hodei.queueing import worker_step
from hodei.queueing.app import create_app
from hodei.queueing.worker_step import worker_context
from hodei.settings import Settings


def _worker(app: Any, **kwargs: Any) -> Any:
    worker_step.install(app)
    return app.WorkController(pool="threads", concurrency=1, **kwargs)


def test_the_worker_built_with_a_context_holds_it_for_its_app_only(tmp_path: Path) -> None:
    ours = create_app(Settings.from_env(home=tmp_path / "a"))
    other = create_app(Settings.from_env(home=tmp_path / "b"))
    context: Any = object()  # the step keeps whatever it is given
    built = _worker(ours, hodei_context=context)
    _worker(other)
    assert built.hodei_context is context
    assert worker_context(ours) is context
    assert worker_context(ours.tasks["hodei.run_job"].app) is context  # as run_job sees it
    assert worker_context(other) is None  # a worker without a context (Celery's own CLI)
    assert worker_context(None) is None
