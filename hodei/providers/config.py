"""Per-type provider configuration, validated with pydantic into one-line errors.

pydantic is used (rather than hand-written checks) because it reports every bad,
missing or unknown field with its path at once; :func:`validate_config` folds that
report into the single line the CLI prints. ``hodei.domain`` stays stdlib-only: these
models live here, at the infrastructure edge.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hodei.errors import InvalidConfiguration, MissingExtra

PROVIDER_TYPES = ("local", "docker", "kubernetes")
# Used with fullmatch: `$` would also accept a trailing newline.
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?([kKmMgG]|[kKmMgG]i?[bB]?)?")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalConfig(_Strict):
    """Workers are processes on the machine running the control plane."""


class DockerConfig(_Strict):
    """Workers are containers on a Docker engine."""

    image: str = Field(min_length=1)
    base_url: str | None = None  # default: DOCKER_HOST or the local socket
    command: list[str] | None = None  # replaces the image's entrypoint
    network_mode: str | None = None
    volumes: dict[str, str] = Field(default_factory=dict)  # host path -> "container[:ro]"
    environment: dict[str, str] = Field(default_factory=dict)
    mem_limit: str | None = None
    cpus: float | None = Field(default=None, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    pull_policy: Literal["always", "if_not_present", "never"] = "if_not_present"
    user: str | None = None

    @field_validator("mem_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value):
            raise ValueError("must look like 512m or 2g")
        return value


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(_Strict):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class KubernetesConfig(_Strict):
    """Workers are pods in one namespace of a Kubernetes cluster."""

    namespace: str = Field(min_length=1, max_length=63)
    image: str = Field(min_length=1)
    kubeconfig: str | None = None  # a file; None means in-cluster, then ~/.kube/config
    context: str | None = None
    in_cluster: bool | None = None  # True: only in-cluster; False: only kubeconfig
    command: list[str] | None = None
    service_account: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    active_deadline_s: int = Field(default=86400, ge=1)
    run_as_user: int = Field(default=10001, ge=1)

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _K8S_NAME.fullmatch(value):
            raise ValueError("must be a DNS label (lowercase letters, digits and -)")
        return value


_MODELS: dict[str, type[_Strict]] = {
    "local": LocalConfig,
    "docker": DockerConfig,
    "kubernetes": KubernetesConfig,
}


def parse_config_text(text: str, source: str = "--config") -> dict[str, Any]:
    """JSON text to a dict, or a one-line error that says where the JSON is broken."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidConfiguration(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise InvalidConfiguration(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def validate_config(provider_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """The normalised config for ``provider_type``, or :class:`InvalidConfiguration`
    naming every missing, unknown or bad field in one line."""
    model = _MODELS.get(provider_type)
    if model is None:
        raise InvalidConfiguration(
            f"unknown provider type {provider_type!r}; use one of {', '.join(PROVIDER_TYPES)}"
        )
    try:
        parsed = model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise InvalidConfiguration(f"invalid {provider_type} config: {problems}") from None
    return parsed.model_dump(exclude_defaults=True, mode="json")


# The package each provider type needs, installed by the extra of the same name.
_LIBRARIES = {"docker": "docker", "kubernetes": "kubernetes"}


def require_library(provider_type: str) -> None:
    """:class:`MissingExtra` naming the pip command unless ``provider_type``'s package
    imports (imported, not just found: a broken install is as missing as an absent one)."""
    module = _LIBRARIES.get(provider_type)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"provider type {provider_type} needs the {module!r} package, which is not "
            f"installed here: pip install 'hodei[{provider_type}]'"
        ) from None


def validate_new_config(provider_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """:func:`validate_config` for a provider being added: its library must be installed,
    or it would break every maintenance pass that touches it."""
    checked = validate_config(provider_type, config)
    require_library(provider_type)
    return checked


def docker_config(config: dict[str, Any]) -> DockerConfig:
    return DockerConfig.model_validate(_checked("docker", config))


def kubernetes_config(config: dict[str, Any]) -> KubernetesConfig:
    return KubernetesConfig.model_validate(_checked("kubernetes", config))


def _checked(provider_type: str, config: dict[str, Any]) -> dict[str, Any]:
    validate_config(provider_type, config)
    return config


def _problem(error: Any) -> str:
    # A key with a newline or control in it is shown escaped: the error stays one line.
    where = ".".join(p if isinstance(p, str) and p.isprintable() else repr(p) for p in error["loc"])
    where = where or "config"
    kind = error["type"]
    if kind == "missing":
        return f"missing field {where}"
    if kind == "extra_forbidden":
        return f"unknown field {where}"
    message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
    return f"{where}: {message}"
