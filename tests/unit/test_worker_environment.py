"""What a provider puts in a worker's environment, with and without API-mode workers
(HODEI_WORKER_API_URL): the local process's, the container's and the pod's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hodei.domain.records import Provider
from hodei.errors import InvalidConfiguration
from hodei.providers.breaker import CircuitBreaker
from hodei.services.ports.providers import LaunchRequest
from hodei.settings import Settings

KEYS = {
    "database_url": "postgresql://hodei:db-pw@db/hodei",
    "broker_url": "redis://:broker-pw@redis:6379/0",
    "secret_key": "fernet-key",
    "secret_keys": "old-key",
    "flower_basic_auth": "admin:pw",
}
CONTROL_PLANE_ONLY = (
    "HODEI_DATABASE_URL",
    "HODEI_SECRET_KEY",
    "HODEI_SECRET_KEYS",
    "HODEI_FLOWER_BASIC_AUTH",
    "HODEI_API_TOKEN",
    "HODEI_WORKER_API_URL",
)


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return Settings(home=tmp_path, **KEYS, **extra)  # type: ignore[arg-type]


def test_without_a_worker_api_url_workers_get_the_database_as_before(tmp_path: Path) -> None:
    env = _settings(tmp_path).worker_environment()
    assert env["HODEI_DATABASE_URL"] == KEYS["database_url"]
    assert "HODEI_API_URL" not in env


def test_api_mode_workers_get_the_api_and_the_broker_and_no_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, worker_api_url="http://hodei:8080")
    env = settings.worker_environment()
    assert env["HODEI_API_URL"] == "http://hodei:8080"
    assert env["HODEI_BROKER_URL"] == KEYS["broker_url"]
    assert not set(CONTROL_PLANE_ONLY) & set(env)
    assert "db-pw" not in str(env) and "fernet-key" not in str(env)


def test_a_worker_api_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match="HODEI_WORKER_API_URL must start with http"):
        _settings(tmp_path, worker_api_url="hodei:8080")


def _request(provider: Provider) -> LaunchRequest:
    return LaunchRequest(uuid.uuid4(), "w", provider.queue, "hodei_token", provider)


def test_docker_containers_and_pods_of_api_mode_workers_hold_no_database_url(
    tmp_path: Path,
) -> None:
    pytest.importorskip("docker")
    pytest.importorskip("kubernetes")
    from hodei.providers.config import kubernetes_config
    from hodei.providers.docker import DockerLauncher
    from hodei.providers.kubernetes import KubernetesLauncher, pod_manifest

    settings = _settings(tmp_path, worker_api_url="http://hodei:8080")
    docker = Provider(uuid.uuid4(), "d", "docker", None, None, config={"image": "w:1"})  # type: ignore[arg-type]
    env = DockerLauncher(docker, settings, CircuitBreaker("d")).environment(_request(docker))
    assert env["HODEI_API_URL"] == "http://hodei:8080" and env["HODEI_OTP_TOKEN"]
    assert not set(CONTROL_PLANE_ONLY) & set(env)

    config = {"namespace": "hodei", "image": "w:1"}
    k8s = Provider(uuid.uuid4(), "k", "kubernetes", None, None, config=config)  # type: ignore[arg-type]
    launcher = KubernetesLauncher(k8s, settings, CircuitBreaker("k"))
    pod = pod_manifest(
        k8s, kubernetes_config(config), _request(k8s), launcher.environment(_request(k8s))
    )
    names = {e["name"] for c in pod["spec"]["containers"] for e in c["env"]}
    assert "HODEI_API_URL" in names and not set(CONTROL_PLANE_ONLY) & names
    assert "db-pw" not in str(pod)
