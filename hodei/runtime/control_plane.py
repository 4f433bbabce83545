"""What a worker asks of the platform, as one narrow port with two adapters.

The worker's runtime (runtime/worker.py, the run-job task, Celery's signal handlers,
delivery's output and cancel checks) calls only :class:`ControlPlane`. Its adapters:

- :class:`DirectControlPlane`: the use cases on the database (a worker that holds
  HODEI_DATABASE_URL, as every worker did before API mode);
- :class:`hodei.runtime.control_http.HttpControlPlane`: the same use cases behind
  ``hodei server``'s /v1/worker routes (a worker with HODEI_API_URL and no database URL).

Both raise :class:`~hodei.errors.DatabaseUnavailable` (or its subclass
ControlPlaneUnavailable) when the record cannot be reached, so the worker's outage
handling (kept outcomes, held output, claims given back) is the same for both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from hodei.domain.records import Job, LogLine, Worker
from hodei.errors import DatabaseUnavailable, HodeiError
from hodei.services.fleet.workers import (
    Pulse,
    WorkerReport,
    broker_back,
    broker_lost,
    heartbeat,
    register_worker,
    terminate_worker,
)
from hodei.services.jobs.attempts import Claim, Outcome
from hodei.services.jobs.dispatch import dispatch_pending
from hodei.store import outage

if TYPE_CHECKING:  # the type only: components do not import the wiring
    from hodei.bootstrap import Container

logger = logging.getLogger(__name__)


class ControlPlane(Protocol):
    """A worker's calls to the platform, for the one worker it registered."""

    def announce(self) -> None:
        """Log outages of the platform from now on (a long-running worker)."""
        ...

    def register(self, token: str, infra_ref: str) -> Worker:
        """Spend the bootstrap token: the worker, READY."""
        ...

    def heartbeat(self, *, record: bool, report: Callable[[], WorkerReport]) -> Pulse: ...

    def claim(self, job_id: UUID, attempt: int, task_id: str) -> Claim: ...

    def finish(self, job: Job, outcome: Outcome) -> Job | None:
        """Record the outcome of ``job`` (as claimed); the job after, None if the
        attempt is no longer this worker's."""
        ...

    def cancel_requested(self, job: Job) -> bool: ...

    def append_logs(self, lines: Sequence[LogLine]) -> None: ...

    def secret_env(self, job: Job) -> dict[str, str]:
        """The claimed job's secret_env in clear, for its command only."""
        ...

    def terminate(self, reason: str) -> bool: ...

    def broker_lost(self, reason: str) -> None:
        """The worker's consumer lost its broker: DEGRADED, not READY, with ``reason``."""
        ...

    def broker_back(self, down_s: float) -> None:
        """Its consumer reaches the broker again: READY, or BUSY if it runs a job."""
        ...


class DirectControlPlane:
    """The use cases on the worker's own database connection (claim and finish through
    the facade, hodei.core.Hodei, as every other caller)."""

    def __init__(self, container: Container) -> None:
        self._c = container
        self._worker_id: UUID | None = None
        self._queue = ""

    @property
    def worker_id(self) -> UUID:
        assert self._worker_id is not None, "register first"
        return self._worker_id

    def announce(self) -> None:
        outage.DATABASE.announce()

    def register(self, token: str, infra_ref: str) -> Worker:
        worker = register_worker(self._c.store, self._c.clock, token, infra_ref=infra_ref)
        self._worker_id, self._queue = worker.id, worker.queue
        return worker

    def heartbeat(self, *, record: bool, report: Callable[[], WorkerReport]) -> Pulse:
        c = self._c
        pulse = heartbeat(c.store, c.clock, self.worker_id, record=record, report=report)
        try:  # due retries of its queue go out from here too (as beat's dispatch does)
            dispatch_pending(c.store, c.clock, c.publisher, queue=self._queue, limit=50)
        except DatabaseUnavailable:
            raise  # said once per process (hodei.store.outage); the caller logs at debug
        except HodeiError as exc:  # the heartbeat itself went through
            logger.warning(
                "dispatch of %s failed: %s",
                self._queue,
                exc,
                extra={"worker_id": str(self.worker_id)},
            )
        return pulse

    def claim(self, job_id: UUID, attempt: int, task_id: str) -> Claim:
        return self._c.hodei.claim(
            job_id=job_id, attempt=attempt, worker_id=self.worker_id, task_id=task_id
        )

    def finish(self, job: Job, outcome: Outcome) -> Job | None:
        return self._c.hodei.finish(job, worker_id=self.worker_id, outcome=outcome)

    def cancel_requested(self, job: Job) -> bool:
        with self._c.store.transaction() as tx:
            return tx.jobs.is_cancel_requested(job.id)

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        with self._c.store.transaction() as tx:
            tx.logs.append(list(lines))

    def secret_env(self, job: Job) -> dict[str, str]:
        if not job.secret_env_sealed:
            return {}
        return self._c.secrets.open(job.secret_env_sealed)

    def terminate(self, reason: str) -> bool:
        return terminate_worker(self._c.store, self._c.clock, self.worker_id, reason=reason)

    def broker_lost(self, reason: str) -> None:
        broker_lost(self._c.store, self._c.clock, self.worker_id, reason=reason)

    def broker_back(self, down_s: float) -> None:
        broker_back(self._c.store, self._c.clock, self.worker_id, down_s=down_s)
