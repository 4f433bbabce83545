"""The Kubernetes provider: one Pod per worker, through the official client.

Pods are named ``hodei-worker-<worker id>``, labelled like Docker containers, run
with ``restartPolicy: Never``, a non-root security context and an
``activeDeadlineSeconds``. Pod problems (ErrImagePull, ImagePullBackOff,
CrashLoopBackOff, OOMKilled, Unschedulable, ...) are reported to reconciliation,
which records them and fails fast on the permanent ones. ``kubernetes`` is imported
lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID

from hodei.domain.records import Provider, Worker
from hodei.domain.states import ProviderHealth
from hodei.errors import ProviderUnavailable, ProvisionFailed
from hodei.providers.breaker import CircuitBreaker
from hodei.providers.config import KubernetesConfig, kubernetes_config
from hodei.services.ports.providers import HealthReport, InfraWorker, LaunchRequest
from hodei.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
MANAGED, WORKER_ID, PROVIDER = "hodei.managed", "hodei.worker_id", "hodei.provider"
# Waiting reasons that will not fix themselves, and what hodei calls them.
PERMANENT_REASONS = {
    "ErrImagePull": "image_missing",
    "ImagePullBackOff": "image_missing",
    "InvalidImageName": "image_missing",
    "ErrImageNeverPull": "image_missing",
    "CreateContainerConfigError": "invalid_config",
    "CreateContainerError": "invalid_config",
}
TRANSIENT_REASONS = {"CrashLoopBackOff": "crash_loop", "Unschedulable": "unschedulable"}


def pod_name(worker_id: UUID) -> str:
    return f"hodei-worker-{worker_id}"


def pod_manifest(
    provider: Provider, config: KubernetesConfig, request: LaunchRequest, env: dict[str, str]
) -> dict[str, Any]:
    """The Pod for one worker, as the API's JSON (validated against the official schema
    in the tests)."""
    labels = {
        **config.labels,
        MANAGED: "true",
        WORKER_ID: str(request.worker_id),
        PROVIDER: provider.name,
    }
    container: dict[str, Any] = {
        "name": "worker",
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if config.command:
        container["command"] = list(config.command)
    resources = {k: v for k, v in config.resources.model_dump().items() if v}
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": config.active_deadline_s,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        spec["tolerations"] = [_toleration(t.model_dump()) for t in config.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name(request.worker_id), "labels": labels},
        "spec": spec,
    }


def _toleration(t: dict[str, Any]) -> dict[str, Any]:
    names = {"toleration_seconds": "tolerationSeconds"}
    return {names.get(k, k): v for k, v in t.items() if v is not None}


class KubernetesLauncher:
    """Launches, inspects and removes worker pods in one namespace."""

    def __init__(self, provider: Provider, settings: Settings, breaker: CircuitBreaker) -> None:
        self.provider = provider
        self.config = kubernetes_config(provider.config)
        self._settings = settings
        self._breaker = breaker

    @cached_property
    def api(self) -> Any:
        """A CoreV1Api from the kubeconfig, or in-cluster (then ~/.kube/config)."""
        from kubernetes import client, config

        cfg = self.config
        try:
            if cfg.kubeconfig or cfg.in_cluster is False:
                kubeconfig = cfg.kubeconfig
                api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=cfg.context
                )
                return client.CoreV1Api(api_client)
            configuration = client.Configuration()
            try:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except config.ConfigException:
                if cfg.in_cluster:
                    raise
                return client.CoreV1Api(
                    config.new_client_from_config(context=cfg.context)  # type: ignore[no-untyped-call]
                )
            return client.CoreV1Api(client.ApiClient(configuration))
        except (config.ConfigException, OSError) as exc:
            raise ProvisionFailed(
                "invalid_config", f"cannot load Kubernetes credentials: {exc}"
            ) from exc

    def environment(self, request: LaunchRequest) -> dict[str, str]:
        return {
            **self._settings.container_environment(),
            "HODEI_HOME": "/tmp/hodei",  # noqa: S108 - the control plane's home is not there
            **self.config.environment,
            **request.environment,
            "HODEI_OTP_TOKEN": request.token,
            "HODEI_WORKER_ID": str(request.worker_id),
        }

    def launch(self, request: LaunchRequest) -> str:
        body = pod_manifest(self.provider, self.config, request, self.environment(request))
        pod = self._call(lambda: self.api.create_namespaced_pod(self.config.namespace, body))
        logger.info(
            "created pod %s for worker %s",
            pod.metadata.name,
            request.worker_id,
            extra={"worker_id": str(request.worker_id)},
        )
        return f"pod:{self.config.namespace}/{pod.metadata.name}"

    def destroy(self, worker: Worker) -> None:
        self.remove(pod_name(worker.id))

    def remove(self, ref: str) -> None:
        from kubernetes.client.exceptions import ApiException

        def _delete() -> None:
            try:
                self.api.delete_namespaced_pod(ref, self.config.namespace, grace_period_seconds=5)
            except ApiException as exc:
                if exc.status != 404:
                    raise

        self._call(_delete)
        logger.info("deleted pod %s/%s", self.config.namespace, ref)

    def list_managed(self) -> list[InfraWorker]:
        selector = f"{MANAGED}=true,{PROVIDER}={self.provider.name}"
        pods = self._call(
            lambda: self.api.list_namespaced_pod(self.config.namespace, label_selector=selector)
        )
        return [pod_state(p) for p in pods.items]

    def exited(self, worker: Worker) -> str | None:
        """Why the worker's pod is gone or has ended; None while it is pending or runs."""
        from kubernetes.client.exceptions import ApiException

        def _read() -> Any:
            try:
                return self.api.read_namespaced_pod(pod_name(worker.id), self.config.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        pod = self._call(_read)
        if pod is None:
            return "its pod is gone"
        state = pod_state(pod)
        if state.running:
            return None
        return f"its pod ended before it registered ({state.detail or pod.status.phase})"

    def check(self, timeout_s: float) -> HealthReport:
        """List pods in the namespace: forbidden is DEGRADED (with the API's message)."""
        try:
            self._call(
                lambda: self.api.list_namespaced_pod(
                    self.config.namespace, limit=1, _request_timeout=timeout_s
                )
            )
        except ProvisionFailed as exc:
            health = (
                ProviderHealth.DEGRADED if exc.kind == "forbidden" else ProviderHealth.UNHEALTHY
            )
            return HealthReport(health, str(exc))
        except ProviderUnavailable as exc:
            return HealthReport(ProviderHealth.UNHEALTHY, str(exc))
        return HealthReport(ProviderHealth.HEALTHY, f"listed pods in {self.config.namespace}")

    def _call(self, fn: Callable[[], T]) -> T:
        return self._breaker.call_translated(
            fn, counts=_is_outage, translate=lambda exc: _translate(self.provider.name, exc)
        )


def _is_outage(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ProvisionFailed):
        return False
    if isinstance(exc, ApiException):
        code = int(exc.status or 0)
        return code == 0 or code >= 500 or code == 429
    return True


def _translate(name: str, exc: Exception) -> Exception:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = _status_message(exc)
        kinds = {
            401: "permission_denied",
            403: "forbidden",
            404: "namespace_missing",
            422: "invalid_config",
            400: "invalid_config",
        }
        if exc.status in kinds:
            return ProvisionFailed(kinds[exc.status], message)
        return ProviderUnavailable(f"provider {name}: Kubernetes API error {exc.status}: {message}")
    return ProviderUnavailable(
        f"provider {name}: Kubernetes API unreachable: {str(exc).splitlines()[0][:300]}"
    )


def _status_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def pod_state(pod: Any) -> InfraWorker:
    """What a pod's status says, in hodei's terms."""
    labels = pod.metadata.labels or {}
    try:
        worker_id = UUID(labels[WORKER_ID]) if labels.get(WORKER_ID) else None
    except ValueError:
        worker_id = None
    status = pod.status
    phase = status.phase or "Pending"
    running = phase in ("Pending", "Running")
    exit_code, oom, problem, detail = None, False, None, str(status.message or "")
    for cs in status.container_statuses or []:
        waiting, terminated = cs.state.waiting, cs.state.terminated
        if waiting is not None and waiting.reason in {**PERMANENT_REASONS, **TRANSIENT_REASONS}:
            problem = {**PERMANENT_REASONS, **TRANSIENT_REASONS}[waiting.reason]
            detail = f"{waiting.reason}: {waiting.message or ''}".strip(": ")
        if terminated is not None:
            exit_code = terminated.exit_code
            oom = terminated.reason == "OOMKilled"
            detail = detail or f"{terminated.reason or 'terminated'} (exit code {exit_code})"
    for condition in status.conditions or []:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            problem, detail = "unschedulable", f"Unschedulable: {condition.message or ''}"
    if status.reason == "DeadlineExceeded":
        problem, detail = "deadline_exceeded", str(status.message or "activeDeadlineSeconds")
    if oom:
        problem = "oom_killed"
    return InfraWorker(
        ref=pod.metadata.name,
        worker_id=worker_id,
        running=running,
        exit_code=exit_code,
        oom_killed=oom,
        problem=problem,
        detail=detail,
        permanent=problem in PERMANENT_REASONS.values(),
    )
