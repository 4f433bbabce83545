"""The Docker provider: one container per worker, through the docker SDK.

Containers are named ``hodei-worker-<worker id>`` and labelled ``hodei.managed``,
``hodei.worker_id`` and ``hodei.provider``, which is how they are found again (the
worker row's ``infra_ref`` is rewritten when the worker registers). They are not
auto-removed: reconciliation reads their exit code and OOM flag first, records them
on the timeline, then removes them. The ``docker`` package is imported lazily, so
hodei without the Docker provider does not need it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from hodei.domain.records import Provider, Worker
from hodei.domain.states import ProviderHealth
from hodei.errors import CircuitOpen, ProviderUnavailable, ProvisionFailed
from hodei.providers.breaker import CircuitBreaker
from hodei.providers.config import DockerConfig, docker_config
from hodei.services.ports.providers import HealthReport, InfraWorker, LaunchRequest
from hodei.settings import Settings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container as DockerContainer

logger = logging.getLogger(__name__)

T = TypeVar("T")
MANAGED = "hodei.managed"
WORKER_ID = "hodei.worker_id"
PROVIDER = "hodei.provider"
_RUNNING = frozenset({"created", "running", "restarting", "paused"})


def container_name(worker_id: UUID) -> str:
    return f"hodei-worker-{worker_id}"


class DockerLauncher:
    """Launches, inspects and removes worker containers of one Docker provider."""

    def __init__(
        self,
        provider: Provider,
        settings: Settings,
        breaker: CircuitBreaker,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.provider = provider
        self.config: DockerConfig = docker_config(provider.config)
        self._settings = settings
        self._breaker = breaker
        self._timeout_s = timeout_s

    @cached_property
    def client(self) -> DockerClient:
        import docker

        try:
            if self.config.base_url:
                return docker.DockerClient(base_url=self.config.base_url, timeout=self._timeout_s)
            return docker.from_env(timeout=self._timeout_s)
        except docker.errors.DockerException as exc:
            raise ProviderUnavailable(
                f"provider {self.provider.name}: cannot reach the Docker engine: {exc}"
            ) from exc

    # -- launching ----------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> str:
        container = self._call(lambda: self._create(request))
        self._call(container.start)
        logger.info(
            "started container %s for worker %s",
            container.name,
            request.worker_id,
            extra={"worker_id": str(request.worker_id)},
        )
        return f"docker:{container.short_id}"

    def _create(self, request: LaunchRequest) -> DockerContainer:
        self._ensure_image()
        cfg = self.config
        return self.client.containers.create(
            cfg.image,
            entrypoint=cfg.command,
            name=container_name(request.worker_id),
            labels={**cfg.labels, **self.labels(request.worker_id)},
            environment=self.environment(request),
            network_mode=cfg.network_mode,
            volumes=[f"{host}:{target}" for host, target in cfg.volumes.items()],
            mem_limit=cfg.mem_limit,
            nano_cpus=int(cfg.cpus * 1e9) if cfg.cpus else None,
            user=cfg.user,
            detach=True,
        )

    def labels(self, worker_id: UUID) -> dict[str, str]:
        return {MANAGED: "true", WORKER_ID: str(worker_id), PROVIDER: self.provider.name}

    def environment(self, request: LaunchRequest) -> dict[str, str]:
        """The worker's settings (database, broker, intervals), its token and id."""
        return {
            **self._settings.container_environment(),
            "HODEI_HOME": "/tmp/hodei",  # noqa: S108 - the control plane's home is not there
            **self.config.environment,
            **request.environment,
            "HODEI_OTP_TOKEN": request.token,
            "HODEI_WORKER_ID": str(request.worker_id),
        }

    def _ensure_image(self) -> None:
        import docker

        image, policy = self.config.image, self.config.pull_policy
        if policy != "always":
            try:
                self.client.images.get(image)
                return
            except docker.errors.ImageNotFound:
                if policy == "never":
                    raise ProvisionFailed(
                        "image_missing", f"image {image} is not on the engine (pull_policy never)"
                    ) from None
        try:
            self.client.images.pull(image)
        except docker.errors.APIError as exc:
            raise ProvisionFailed(
                "image_missing", f"image {image} could not be pulled: {_explain(exc)}"
            ) from exc

    # -- inspecting and removing -----------------------------------------------------

    def destroy(self, worker: Worker) -> None:
        """Remove the worker's container, found by its label, if it still exists."""
        for container in self._managed({WORKER_ID: str(worker.id)}):
            self.remove(container.id)

    def remove(self, ref: str) -> None:
        import docker

        def _remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(ref).remove(force=True)

        self._call(_remove)
        logger.info("removed container %s", ref[:12])

    def list_managed(self) -> list[InfraWorker]:
        return [_infra(c) for c in self._managed({PROVIDER: self.provider.name})]

    def exited(self, worker: Worker) -> str | None:
        """Why the worker's container is gone or stopped; None while it runs."""
        found = [_infra(c) for c in self._managed({WORKER_ID: str(worker.id)})]
        if any(i.running for i in found):
            return None
        if not found:
            return "its container is gone"
        item = found[0]
        what = "OOM-killed" if item.oom_killed else f"exited with code {item.exit_code}"
        return f"its container {what} before it registered{_detail(item)}"

    def _managed(self, labels: dict[str, str]) -> list[DockerContainer]:
        selector = [f"{MANAGED}=true", *(f"{k}={v}" for k, v in labels.items())]
        containers: list[DockerContainer] = self._call(
            lambda: self.client.containers.list(all=True, filters={"label": selector})
        )
        return containers

    def check(self, timeout_s: float) -> HealthReport:
        """Ping the engine; DEGRADED when the image cannot be found and will not be pulled."""
        import docker

        try:
            self._call(lambda: self._ping(timeout_s))
        except CircuitOpen as exc:
            return HealthReport(ProviderHealth.UNHEALTHY, str(exc))
        except ProviderUnavailable as exc:
            return HealthReport(ProviderHealth.UNHEALTHY, str(exc))
        if self.config.pull_policy == "never":
            try:
                self.client.images.get(self.config.image)
            except docker.errors.ImageNotFound:
                return HealthReport(
                    ProviderHealth.DEGRADED, f"image {self.config.image} is not on the engine"
                )
        return HealthReport(ProviderHealth.HEALTHY, "engine answered ping")

    def _ping(self, timeout_s: float) -> None:
        import docker

        timeout = max(int(timeout_s), 1)
        if self.config.base_url:
            client = docker.DockerClient(base_url=self.config.base_url, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()

    def _call(self, fn: Callable[[], T]) -> T:
        """One API call through the breaker; transport errors become ProviderUnavailable,
        refusals (missing image, permission, bad config) a permanent ProvisionFailed."""
        return self._breaker.call_translated(
            fn, counts=_is_outage, translate=lambda exc: _translate(self.provider.name, exc)
        )


def _is_outage(exc: BaseException) -> bool:
    """Failures that say the engine is unreachable or broken, not that it refused."""
    import docker

    if isinstance(exc, ProvisionFailed):
        return False
    if isinstance(exc, docker.errors.APIError):
        return exc.status_code is None or exc.status_code >= 500
    return not isinstance(exc, PermissionError)


def _translate(name: str, exc: Exception) -> Exception:
    import docker

    if isinstance(exc, docker.errors.ImageNotFound):
        return ProvisionFailed("image_missing", _explain(exc))
    if isinstance(exc, PermissionError) or (
        isinstance(exc, docker.errors.APIError) and exc.status_code in (401, 403)
    ):
        return ProvisionFailed("permission_denied", _explain(exc))
    if isinstance(exc, docker.errors.APIError) and exc.status_code in (400, 404, 422):
        return ProvisionFailed("invalid_config", _explain(exc))
    return ProviderUnavailable(f"provider {name}: Docker engine error: {_explain(exc)}")


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).splitlines()[0][:300]


def _detail(item: InfraWorker) -> str:
    return f": {item.detail}" if item.detail else ""


def _infra(container: DockerContainer) -> InfraWorker:
    state: dict[str, Any] = container.attrs.get("State", {})
    status = str(state.get("Status", container.status))
    raw_id = container.labels.get(WORKER_ID)
    try:
        worker_id = UUID(raw_id) if raw_id else None
    except ValueError:
        worker_id = None
    running = status in _RUNNING
    oom = bool(state.get("OOMKilled"))
    return InfraWorker(
        ref=container.id,
        worker_id=worker_id,
        running=running,
        exit_code=None if running else int(state.get("ExitCode", 0)),
        oom_killed=oom,
        problem="oom_killed" if oom else None,
        detail=str(state.get("Error") or ""),
    )
