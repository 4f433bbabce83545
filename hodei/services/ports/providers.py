"""A provider's infrastructure, as services see it: launch and remove workers, list
what runs for hodei, check health. The adapters of ``hodei.providers`` implement
these; nothing here imports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from hodei.domain.records import Provider, Worker
from hodei.domain.states import ProviderHealth


@dataclass(frozen=True)
class LaunchRequest:
    """What a provider needs to start one worker."""

    worker_id: UUID
    worker_name: str
    queue: str
    token: str
    provider: Provider
    environment: dict[str, str] = field(default_factory=dict)


class WorkerLauncher(Protocol):
    """Starts workers on a provider's infrastructure; returns the infra reference."""

    def launch(self, request: LaunchRequest) -> str: ...
    def destroy(self, worker: Worker) -> None:
        """Remove the worker's process, container or pod if it still exists."""
        ...

    def exited(self, worker: Worker) -> str | None:
        """Why the worker's process, container or pod is known to have ended (it died,
        was killed, exited); None while it runs, or when this process cannot tell."""
        ...


@dataclass(frozen=True)
class InfraWorker:
    """One hodei-labelled container or pod as the provider reports it."""

    ref: str  # container id or pod name
    worker_id: UUID | None
    running: bool  # created, starting or running: not finished
    exit_code: int | None = None
    oom_killed: bool = False
    problem: str | None = None  # image_missing, unschedulable, oom_killed, ...
    detail: str = ""
    permanent: bool = False

    @property
    def finished(self) -> bool:
        return not self.running


class InfrastructureInspector(Protocol):
    """Lists and removes the containers or pods a provider runs for hodei."""

    def list_managed(self) -> list[InfraWorker]: ...
    def remove(self, ref: str) -> None: ...


@dataclass(frozen=True)
class HealthReport:
    """What one check found."""

    health: ProviderHealth
    message: str = ""


class HealthProbe(Protocol):
    def check(self, timeout_s: float) -> HealthReport:
        """Check the provider within ``timeout_s``; report failures, never raise."""
        ...
