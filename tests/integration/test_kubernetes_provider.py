"""The Kubernetes provider through the official client, against a local stand-in for
the Pods API (tests/k8s_fake): a job goes PENDING -> SUCCEEDED in a pod; a missing image
and a forbidden namespace show up clearly; every manifest is schema-valid."""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hodei import JobState
from hodei.domain.records import Provider, Worker
from hodei.domain.states import LAUNCHING_REF, WorkerState
from hodei.providers.config import kubernetes_config
from hodei.providers.kubernetes import pod_manifest
from hodei.queueing.maintenance_tasks import TASKS
from hodei.sdk import Client
from hodei.services.ports.providers import LaunchRequest
from hodei.services.ports.store import EventQuery
from hodei.settings import Settings
from tests.api_server import running_server
from tests.conftest import stop_workers
from tests.k8s_fake import FakeKubernetes
from tests.support import REPO, wait_for

K8S_VERSION = "1.30.0"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubernetes]:
    with FakeKubernetes(tmp_path, namespaces=("hodei", "locked"), forbidden=("locked",)) as f:
        yield f


def _config(fake: FakeKubernetes, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "namespace": "hodei",
        "image": "registry.example.com/hodei/worker:0.1.0",
        "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig")),
        "command": [sys.executable, "-m", "hodei", "worker", "start"],
        **extra,
    }


@pytest.fixture
def client(pg_settings: Settings) -> Iterator[Client]:
    settings = dataclasses.replace(pg_settings, worker_idle_timeout_s=2.0)
    c = Client.from_env(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    yield c
    stop_workers(c)
    c.close()


def _reconcile(c: Client) -> dict[str, Any]:
    return TASKS["reconcile_providers"](c.container)


def _events(c: Client, aggregate_id: Any, kind: str) -> list[Any]:
    with c.container.store.transaction() as tx:
        return tx.events.search(EventQuery(aggregate_ids=[aggregate_id], event_types=[kind]))


@pytest.mark.kubernetes
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_job_runs_in_a_pod_and_the_pod_is_deleted(
    client: Client, fake: FakeKubernetes, tmp_path: Path
) -> None:
    client.add_provider("k8s", "kubernetes", config=_config(fake, tmp_path), priority=10)
    job = client.submit("echo from-pod", provider="k8s")
    assert client.get(job.id).state in (JobState.PENDING, JobState.QUEUED)

    done = client.wait(job.id, timeout=90)

    assert done.state is JobState.SUCCEEDED, done.error
    assert [line.line for line in client.logs(job.id)] == ["from-pod"]
    pod = fake.pod(f"hodei-worker-{done.worker_id}")
    assert pod.body["metadata"]["labels"] == {
        "hodei.managed": "true",
        "hodei.worker_id": str(done.worker_id),
        "hodei.provider": "k8s",
    }
    assert pod.body["spec"]["restartPolicy"] == "Never"
    # The worker idles out, the pod Succeeds, and reconciliation deletes it.
    wait_for(
        lambda: _reconcile(client)["k8s"]["removed"],
        timeout=60,
        interval=0.5,
        message="the finished pod to be deleted",
    )
    assert not fake.pods
    assert (
        "DELETE",
        f"/api/v1/namespaces/hodei/pods/hodei-worker-{done.worker_id}",
    ) in fake.requests
    exited = _events(client, done.worker_id, "InfrastructureEvent")
    assert [(e.payload["kind"], e.payload["exit_code"]) for e in exited] == [("exited", 0)]


@pytest.mark.kubernetes
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_an_api_mode_pod_holds_no_database_url_and_runs_its_job_through_the_api(
    pg_settings: Settings, fake: FakeKubernetes, tmp_path: Path
) -> None:
    """With HODEI_WORKER_API_URL, the pod's spec (all of it, not only its env) holds the
    API's URL and none of the control plane's keys; its worker, whose process has exactly
    that environment, registers through the API (a credential) and runs a job with a
    secret_env the server opened for it; the token in the spec is spent."""
    import httpx
    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings = dataclasses.replace(pg_settings, worker_idle_timeout_s=2.0, secret_key=key)
    with (
        open(tmp_path / "server.log", "wb") as log,
        running_server(settings, log=log, worker_api=True) as server,
    ):
        client = server.direct
        client.add_provider("k8s", "kubernetes", config=_config(fake, tmp_path), priority=10)
        job = client.submit(
            ["sh", "-c", 'echo "from-pod $TOKEN"'],
            provider="k8s",
            secret_env={"TOKEN": "s3cr3t-value-0123456789"},
        )
        done = client.wait(job.id, timeout=90)
        assert done.state is JobState.SUCCEEDED, done.error
        assert [line.line for line in client.logs(job.id)] == ["from-pod [masked]"]

        pod = fake.pod(f"hodei-worker-{done.worker_id}")
        env = {e["name"]: e.get("value", "") for e in pod.container["env"]}
        assert env["HODEI_API_URL"] == server.url
        assert env["HODEI_BROKER_URL"] == settings.broker_url
        assert not {"HODEI_DATABASE_URL", "HODEI_SECRET_KEY", "HODEI_SECRET_KEYS"} & set(env)
        assert not {"HODEI_API_TOKEN", "HODEI_WORKER_API_URL"} & set(env)
        manifest = json.dumps(pod.body)
        for needle in ("postgresql", settings.database_url, key, *server.tokens.values()):
            assert needle not in manifest
        assert "volumes" not in pod.body["spec"]  # no file mounted either
        with client.container.engine.connect() as conn:
            credentials = conn.execute(
                sa.text("SELECT count(*) FROM worker_credentials WHERE worker_id = :w"),
                {"w": done.worker_id},
            ).scalar_one()
        assert credentials == 1
        again = httpx.post(
            f"{server.url}/v1/worker/register", json={"token": env["HODEI_OTP_TOKEN"]}
        )
        assert again.status_code == 403 and again.json()["code"] == "TokenRejected"


@pytest.mark.kubernetes
@pytest.mark.postgres
@pytest.mark.redis
def test_an_image_that_cannot_be_pulled_fails_the_job_fast(
    client: Client, fake: FakeKubernetes, tmp_path: Path
) -> None:
    client.add_provider(
        "k8s", "kubernetes", priority=10, config=_config(fake, tmp_path, image="missing/worker:0")
    )
    job = client.submit("echo never", provider="k8s")

    wait_for(
        lambda: _reconcile(client)["k8s"]["provision_failed"],
        timeout=30,
        interval=0.3,
        message="the pod's pull error to be seen",
    )

    done = client.get(job.id)
    assert (done.state, done.failure_reason) == (JobState.FAILED, "provisioning_failed")
    timeline = [e for e in client.timeline(job.id) if e.event_type == "InfrastructureEvent"]
    # The timeline also carries the failed worker's own event (launch failures of the
    # workers started for the job's queue); the job's is the one on the job.
    infra = [e for e in timeline if e.aggregate_id == job.id]
    assert [e.payload["kind"] for e in infra] == ["image_missing"]
    assert sorted(e.aggregate_type for e in timeline) == ["job", "worker"]
    assert "ErrImagePull" in infra[0].payload["detail"]
    _reconcile(client)
    assert not fake.pods  # the failed worker's pod is deleted


@pytest.mark.kubernetes
@pytest.mark.postgres
@pytest.mark.redis
def test_a_forbidden_namespace_is_degraded_with_the_api_s_message(
    client: Client, fake: FakeKubernetes, tmp_path: Path
) -> None:
    added = client.add_provider(
        "locked", "kubernetes", config=_config(fake, tmp_path, namespace="locked")
    )

    report = client.check_provider_health("locked")

    assert report["locked"].health.value == "DEGRADED"
    assert 'cannot list resource "pods"' in report["locked"].message
    shown = client.provider("locked").provider
    assert (shown.health.value, shown.health_message) == ("DEGRADED", report["locked"].message)
    (changed,) = _events(client, added.id, "ProviderHealthChanged")
    assert (changed.payload["old"], changed.payload["new"]) == ("UNKNOWN", "DEGRADED")
    # Selection passes over a DEGRADED provider only for a HEALTHY one; launching fails fast.
    job = client.submit("echo x", provider="locked")
    done = client.wait(job.id, timeout=20)
    assert (done.state, done.failure_reason) == (JobState.FAILED, "provisioning_failed")
    infra = [e for e in client.timeline(job.id) if e.event_type == "InfrastructureEvent"]
    assert [e.payload["kind"] for e in infra] == ["forbidden"]


def _launched(c: Client, provider: str) -> Worker:
    """The worker provisioning launched for a job submitted to ``provider`` (its pod
    created, the worker not registered)."""
    c.submit("echo never", provider=provider)

    def launched() -> Worker | None:
        with c.container.store.reading() as tx:
            found = tx.workers.search(states=[WorkerState.PROVISIONING], queue=f"hodei.{provider}")
        return next((w for w in found if w.infra_ref not in (None, LAUNCHING_REF)), None)

    worker: Worker = wait_for(launched, timeout=30, message=f"a launch on {provider}")
    return worker


def _worker_row(c: Client, worker: Worker) -> Worker:
    with c.container.store.reading() as tx:
        row = tx.workers.get(worker.id)
    assert row is not None
    return row


@pytest.mark.kubernetes
@pytest.mark.postgres
@pytest.mark.redis
def test_exited_tells_a_pod_that_ended_or_is_gone_from_one_pending_or_running(
    client: Client, fake: FakeKubernetes, tmp_path: Path
) -> None:
    """KubernetesLauncher.exited, what dead-launch detection (services/launches.py) asks
    of a launch that has not registered: None while its pod is Pending or Running, the
    pod's end once it has ended, and that it is gone once deleted."""
    client.add_provider(
        "k8srun", "kubernetes", config=_config(fake, tmp_path, command=["sleep", "60"])
    )
    unschedulable = {"node_selector": {"fake/unschedulable": "yes"}}
    client.add_provider("k8spend", "kubernetes", config=_config(fake, tmp_path, **unschedulable))
    running, pending = _launched(client, "k8srun"), _launched(client, "k8spend")
    launcher = client.container.launcher_for(client.provider("k8srun").provider)
    assert launcher.exited(running) is None
    assert launcher.exited(pending) is None
    assert fake.pod(f"hodei-worker-{pending.id}").body["status"]["phase"] == "Pending"
    client.status()  # dead-launch detection: neither is failed
    assert _worker_row(client, running).state is WorkerState.PROVISIONING
    assert _worker_row(client, pending).state is WorkerState.PROVISIONING

    fake.pod(f"hodei-worker-{running.id}").kill()  # SIGKILL: exit code 137
    ended = "its pod ended before it registered (Error (exit code 137))"
    assert launcher.exited(running) == ended
    client.status()
    failed = _worker_row(client, running)
    assert (failed.state, failed.termination_reason) == (WorkerState.PROVISION_FAILED, ended)

    fake.handle("DELETE", f"/api/v1/namespaces/hodei/pods/hodei-worker-{pending.id}", None)
    assert launcher.exited(pending) == "its pod is gone"
    client.status()
    gone = _worker_row(client, pending)
    assert (gone.state, gone.termination_reason) == (
        WorkerState.PROVISION_FAILED,
        "its pod is gone",
    )


@pytest.mark.kubernetes
def test_label_selectors_and_api_errors_follow_the_kubernetes_api(tmp_path: Path) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    with FakeKubernetes(tmp_path, forbidden=("locked",)) as fake:
        api = client.CoreV1Api(
            config.new_client_from_config(config_file=str(fake.kubeconfig(tmp_path / "kc")))
        )
        body = {
            "metadata": {"name": "p1", "labels": {"app": "a", "tier": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i", "command": ["true"]}]},
        }
        api.create_namespaced_pod("hodei", body)
        for selector, names in [
            ("app=a", ["p1"]),
            ("app!=a", []),
            ("tier in (x,y)", ["p1"]),
            ("!tier", []),
            ("app,tier=x", ["p1"]),
        ]:
            pods = api.list_namespaced_pod("hodei", label_selector=selector)
            assert [p.metadata.name for p in pods.items] == names, selector
        for call, code, reason in [
            (lambda: api.create_namespaced_pod("hodei", body), 409, "AlreadyExists"),
            (lambda: api.read_namespaced_pod("nope", "hodei"), 404, "NotFound"),
            (lambda: api.list_namespaced_pod("locked"), 403, "Forbidden"),
            (lambda: api.list_namespaced_pod("elsewhere"), 404, "NotFound"),
        ]:
            with pytest.raises(ApiException) as caught:
                call()
            assert caught.value.status == code
            assert yaml.safe_load(caught.value.body)["reason"] == reason


def _pod_for(config: dict[str, Any]) -> dict[str, Any]:
    provider = Provider(
        uuid.uuid4(), "k8s", "kubernetes", config=config, created_at=None, updated_at=None
    )  # type: ignore[arg-type]
    request = LaunchRequest(uuid.uuid4(), "w", "hodei.k8s", "hodei_secret", provider)
    return pod_manifest(provider, kubernetes_config(config), request, {"HODEI_X": "1"})


@pytest.mark.kubernetes
@pytest.mark.parametrize(
    "config",
    [
        {"namespace": "hodei", "image": "w:1"},
        {
            "namespace": "hodei",
            "image": "w:1",
            "service_account": "hodei-worker",
            "image_pull_secrets": ["regcred"],
            "node_selector": {"pool": "jobs"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "jobs", "effect": "NoSchedule"}
            ],
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
            "command": ["hodei", "worker", "start"],
            "active_deadline_s": 3600,
        },
    ],
)
def test_generated_pods_are_valid_against_the_official_schema(config: dict[str, Any]) -> None:
    pod = _pod_for(config)
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["activeDeadlineSeconds"] == config.get("active_deadline_s", 86400)


@pytest.mark.kubernetes
@pytest.mark.parametrize(
    "path", sorted((REPO / "workers" / "kubernetes").glob("*.yaml")), ids=lambda p: p.name
)
def test_the_shipped_manifests_are_valid(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


@pytest.mark.kubernetes
def test_the_role_grants_exactly_what_the_provider_uses() -> None:
    docs = list(yaml.safe_load_all((REPO / "workers" / "kubernetes" / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "Role")
    assert {(tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]} == {
        (("pods",), ("create", "get", "list", "watch", "delete")),
        (("pods/log",), ("get",)),
    }
