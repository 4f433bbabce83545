"""The worker process's own state, shared by its Celery tasks and signal handlers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from hodei.domain.records import Worker
from hodei.runtime.broker_link import BrokerLink
from hodei.runtime.control_plane import ControlPlane
from hodei.runtime.hardening import JobUser
from hodei.runtime.outcomes import OutcomeKeeper
from hodei.runtime.runner import GroupGuard

if TYPE_CHECKING:  # the type only: components do not import the wiring
    from hodei.bootstrap import Container


@dataclass
class WorkerContext:
    """Built once by ``hodei worker start``; Celery's worker holds it (queueing/worker_step.py)."""

    container: Container  # settings, clock, the Celery app; its store only in direct mode
    control: ControlPlane  # every call to the platform (database or API)
    worker: Worker
    outcomes: OutcomeKeeper
    stop_reason: str | None = None  # why it stops: set once, by the first cause
    stopping: threading.Event = field(default_factory=threading.Event)
    gave_up: threading.Event = field(default_factory=threading.Event)  # an outcome's deadline
    guard: GroupGuard | None = None
    job_user: JobUser | None = None  # None: jobs run as the worker's own user
    stop: Callable[[str], None] = lambda _reason: None  # stop consuming, with a reason
    broker: BrokerLink | None = None  # its consumer's broker connection, lost or up

    @property
    def worker_id(self) -> UUID:
        return self.worker.id
