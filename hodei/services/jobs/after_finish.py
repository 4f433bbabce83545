"""What follows a written finish, wherever it was written (a worker on the database, or
``hodei server`` for an API-mode worker): the jobs waiting for this one may go, and a
retry due now is published. Each step only logs its failure: the scheduler's sweep and
``dispatch_pending`` do the same later."""

from __future__ import annotations

import logging
from typing import Any

from hodei.domain.records import Job
from hodei.errors import HodeiError
from hodei.services.jobs import gates
from hodei.services.jobs.dispatch import publish_if_due
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)


def after_finish(
    store: Store, clock: Clock, publisher: TaskPublisher, job: Job, **extra: Any
) -> None:
    """``job`` as the finish left it; ``extra`` goes on the log lines."""
    log_extra = {"job_id": str(job.id), "attempt": job.attempt, **extra}
    if job.is_terminal:
        # Its dependents and the next job of its concurrency key may go now: released
        # here, after the finish committed, rather than at the scheduler's next pass.
        try:
            gates.after_end(store, clock, publisher, [job])
        except HodeiError as exc:  # the scheduler's sweep releases them later
            logger.warning(
                "jobs waiting for job %s not released now: %s", job.id, exc, extra=log_extra
            )
    try:
        publish_if_due(store, clock, publisher, job)
    except HodeiError as exc:  # dispatch_pending publishes it later
        logger.warning("retry of job %s not published now: %s", job.id, exc, extra=log_extra)
