"""Names shared by the Celery app, its tasks, its signal handlers and the publisher (a
leaf module, so none of them imports another for a constant)."""

CONTROL_QUEUE = "hodei.control"
RUN_JOB_TASK = "hodei.run_job"
