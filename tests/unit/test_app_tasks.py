"""Each hodei Celery app owns its tasks: building another app in the same process (the
SDK, tests and benchmarks do) neither warns nor hands it the first app's callables."""

from __future__ import annotations

import warnings
from pathlib import Path

from hodei.queueing.app import RUN_JOB_TASK, create_app
from hodei.settings import Settings


def test_apps_built_one_after_another_each_register_their_own_tasks(tmp_path: Path) -> None:
    apps = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Celery's DuplicateTaskNameWarning fails the test
        for n in range(3):
            app = create_app(Settings.from_env(home=tmp_path / str(n)))
            app.finalize()
            apps.append(app)
    run_job = [app.tasks[RUN_JOB_TASK] for app in apps]
    assert [task.app for task in run_job] == apps
    assert all("hodei.dispatch_pending" in app.tasks for app in apps)
