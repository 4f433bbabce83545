"""A job cannot read its worker's secrets (issue 19, item 3).

A hostile job (tests/isolation_probe.py) tries the environ of every ancestor and of every
process, /proc/<pid>/mem, ptrace, /proc/<pid>/fd, every process's cmdline and the files
under HODEI_HOME and the worker's home, looking for the database password, the broker
password and the worker's bootstrap token. The passwords are real parts of the URLs the
worker uses (PostgreSQL here trusts local connections and Redis's default user has no
password, so both accept any), and the token is the one the worker started with.

The test process itself (standing for the user's program that submits jobs) holds the
URLs in its memory; the probe reads memory only of hodei's processes, the worker and its
orphan guard (docs/architecture.md, "Trust boundaries").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hodei import JobState
from hodei.sdk import Client
from hodei.services.fleet.workers import create_worker_token
from hodei.settings import Settings
from tests.conftest import stop_workers
from tests.support import hodei_env, pid_of, terminate, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PROBE = Path(__file__).resolve().parent.parent / "isolation_probe.py"


def _with_password(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    rest = rest.split("@", 1)[-1]
    return f"{scheme}://{user}:{password}@{rest}"


@pytest.fixture
def secrets() -> dict[str, str]:
    return {"db": f"dbpw-{uuid.uuid4().hex}", "broker": f"brokerpw-{uuid.uuid4().hex}"}


def _client(settings: Settings, secrets: dict[str, str], **overrides: Any) -> Client:
    settings = dataclasses.replace(
        settings,
        database_url=_with_password(settings.database_url, "postgres", secrets["db"]),
        broker_url=_with_password(settings.broker_url, "default", secrets["broker"]),
        **overrides,
    )
    return Client.from_env(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    )


@pytest.fixture
def same_user_worker(
    pg_settings: Settings, secrets: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Client, str]]:
    """A client and the token of a worker started by hand whose jobs run as its own user
    (see :func:`_hand_started`)."""
    client = _client(pg_settings, secrets, job_user=pwd.getpwuid(os.geteuid()).pw_name)
    issued = create_worker_token(
        client.container.store, client.container.clock, provider_name="local", ttl_s=60, actor="t"
    )
    env = hodei_env(client.container.settings, HODEI_OTP_TOKEN=issued.secret)
    try:
        with _hand_started(client, issued.worker.id, env, tmp_path / "worker.log"):
            yield client, issued.secret
    finally:
        stop_workers(client)
        client.close()


@contextlib.contextmanager
def _hand_started(client: Client, worker_id: Any, env: dict[str, str], log: Path) -> Iterator[None]:
    """``hodei worker start`` with ``env``, READY, with no capabilities: when the tests
    run as root, the worker runs under ``setpriv`` without any, as root's jobs would
    otherwise read every process whatever it does (CAP_SYS_PTRACE) and a worker with all
    capabilities is out of reach of a job without them anyway (the kernel wants the
    tracer's capabilities to cover the tracee's)."""
    drop = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [
                *(drop if os.geteuid() == 0 else []),
                *(sys.executable, "-m", "hodei", "worker", "start"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: _worker_state(client, worker_id) == "READY",
            timeout=30,
            message="the hand-started worker to register",
        )
        yield
    finally:
        terminate(worker)


def _worker_state(client: Client, worker_id: Any) -> str:
    with client.container.store.reading() as tx:
        worker = tx.workers.get(worker_id)
    return worker.state.value if worker else ""


@pytest.fixture
def default_client(pg_settings: Settings, secrets: dict[str, str]) -> Iterator[Client]:
    client = _client(pg_settings, secrets, job_user="")  # the default: nobody for root
    yield client
    stop_workers(client)
    client.close()


def _worker_token(client: Client, worker_id: Any) -> str:
    """The worker's bootstrap token, read the way only root (or its own user before the
    fix) can: from its /proc environ."""
    with client.container.store.reading() as tx:
        worker = tx.workers.get(worker_id)
    assert worker is not None
    pid = pid_of(worker.infra_ref)
    assert pid is not None
    with open(f"/proc/{pid}/environ", "rb") as f:
        for item in f.read().split(b"\0"):
            if item.startswith(b"HODEI_OTP_TOKEN="):
                return item.split(b"=", 1)[1].decode()
    raise AssertionError("the worker has no HODEI_OTP_TOKEN")


def _probe(
    client: Client,
    secrets: dict[str, str],
    token: str | None = None,
    *,
    provider: str | None = None,
    token_of: Callable[[Any], str] | None = None,
    more_needles: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the probe as a job on the worker that ran a first job; what it reports."""
    # A first job brings the worker up; the probe then runs on that same worker.
    first = client.wait(client.submit("true", provider=provider).id, timeout=90)
    assert first.state is JobState.SUCCEEDED
    token = token or (token_of or functools.partial(_worker_token, client))(first.worker_id)
    needles = [secrets["db"], secrets["broker"], token, *more_needles]
    job = client.submit(
        ["/usr/bin/python3", "-I", "-c", PROBE.read_text()],
        env={
            "PROBE_NEEDLES": ",".join(n.encode().hex() for n in needles),
            "PROBE_DIRS": f"{client.container.settings.home}:{Path.home()}",
        },
        timeout_s=120,
        provider=provider,
    )
    done = client.wait(job.id, timeout=150)
    lines = [line.line for line in client.logs(job.id)]
    assert done.state is JobState.SUCCEEDED, lines
    assert done.worker_id == first.worker_id
    report: dict[str, Any] = json.loads(lines[-1])
    return report


@pytest.fixture
def api_mode_worker(
    pg_settings: Settings, secrets: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Client, str]]:
    """As ``same_user_worker``, but the worker is an API-mode worker of a real ``hodei
    server``: it holds the API's URL, the broker URL and its token, and after
    registering a credential of its own, never the database URL."""
    from tests.api_server import running_server

    made = _client(pg_settings, secrets, job_user=pwd.getpwuid(os.geteuid()).pw_name)
    base = made.container.settings  # the URLs with the passwords the probe looks for
    made.close()
    with (
        open(tmp_path / "server.log", "wb") as server_log,
        running_server(base, log=server_log, worker_api=True) as server,
    ):
        client = server.direct
        issued = create_worker_token(
            client.container.store,
            client.container.clock,
            provider_name="local",
            ttl_s=60,
            actor="t",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        env.update(client.container.settings.worker_environment(), HODEI_OTP_TOKEN=issued.secret)
        assert "HODEI_DATABASE_URL" not in env and env["HODEI_API_URL"] == server.url
        with _hand_started(client, issued.worker.id, env, tmp_path / "worker.log"):
            yield client, issued.secret


@pytest.mark.parametrize("worker", ["same_user_worker", "api_mode_worker"])
def test_a_job_of_its_own_user_finds_no_secret_of_its_worker(
    worker: str, request: pytest.FixtureRequest, secrets: dict[str, str]
) -> None:
    """Direct mode and API mode alike. An API-mode worker's credential (``hodei_wkr_...``,
    which the test cannot know) is looked for by its prefix: it appears nowhere the job
    can read."""
    client, token = request.getfixturevalue(worker)
    more = ("hodei_wkr_",) if worker == "api_mode_worker" else ()
    report = _probe(client, secrets, token, more_needles=more)
    assert report["uid"] == os.geteuid()
    assert len(report["hodei_processes"]) >= 2, report  # the worker and its guard
    assert report["found"] == [], report
    assert report["reachable"] == [], report
    assert report["inherited_fds"] == [], report
    assert report["files_read"] > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a worker running as root")
def test_a_root_workers_jobs_run_as_nobody_and_find_no_secret(
    default_client: Client, secrets: dict[str, str]
) -> None:
    report = _probe(default_client, secrets)
    assert report["uid"] == pwd.getpwnam("nobody").pw_uid
    assert report["found"] == [], report
    assert report["reachable"] == [], report
    assert report["inherited_fds"] == [], report


def test_the_probe_finds_what_is_readable(tmp_path: Path) -> None:
    """The probe itself works: a file holding a needle is found (so an empty report
    above means nothing was found, not that the probe is blind)."""
    (tmp_path / "leak.txt").write_text("x secret-needle-123 y")
    env = {**os.environ, "PROBE_NEEDLES": b"secret-needle-123".hex(), "PROBE_DIRS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-I", str(PROBE)], env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout)
    assert any("leak.txt" in where for where in report["found"]), report


@pytest.mark.docker
@pytest.mark.parametrize("worker_user", ["root", "65534:65534"])
def test_a_job_in_a_docker_worker_finds_no_secret(
    default_client: Client, secrets: dict[str, str], worker_user: str
) -> None:
    """The same probe in a container of the Docker provider (this checkout's hodei, bind
    mounted): a root worker's job runs as nobody; a worker running as uid 65534 runs its
    jobs as that same uid, which only its being undumpable keeps out."""
    from tests.docker_engine import build_test_image, engine, worker_config

    docker_client = engine()
    name = f"iso{uuid.uuid4().hex[:8]}"
    config = worker_config(build_test_image(docker_client), user=worker_user)
    default_client.add_provider(name, "docker", config=config, max_workers=1)

    def container_token(worker_id: Any) -> str:
        (container,) = docker_client.containers.list(filters={"label": [f"hodei.provider={name}"]})
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert container.labels["hodei.worker_id"] == str(worker_id)
        return env["HODEI_OTP_TOKEN"]

    try:
        report = _probe(default_client, secrets, provider=name, token_of=container_token)
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": [f"hodei.provider={name}"]}
        ):
            container.remove(force=True)
        docker_client.close()
    assert report["uid"] == 65534
    assert len(report["hodei_processes"]) >= 2, report  # the worker and its guard
    assert report["found"] == [], report
    assert report["reachable"] == [], report
    assert report["inherited_fds"] == [], report


@pytest.mark.docker
@pytest.mark.parametrize("worker_user", ["root", "65534:65534"])
def test_a_job_in_an_api_mode_docker_worker_finds_no_secret(
    pg_settings: Settings, secrets: dict[str, str], worker_user: str, tmp_path: Path
) -> None:
    """The Docker provider of a control plane with HODEI_WORKER_API_URL: the container's
    spec (``docker inspect``) holds no database URL, no secret_env key, no API token nor
    worker credential, and only a token already spent, and the probe finds neither
    secrets nor the worker's credential."""
    import httpx
    from cryptography.fernet import Fernet

    from tests.api_server import running_server
    from tests.docker_engine import build_test_image, engine, worker_config

    made = _client(pg_settings, secrets, job_user="")  # the default: nobody for root
    key = Fernet.generate_key().decode()
    base = dataclasses.replace(made.container.settings, secret_key=key)
    made.close()
    docker_client = engine()
    name = f"isa{uuid.uuid4().hex[:8]}"
    inspected: list[dict[str, Any]] = []
    with (
        open(tmp_path / "server.log", "wb") as log,
        running_server(base, log=log, worker_api=True) as server,
    ):
        client = server.direct
        config = worker_config(build_test_image(docker_client), user=worker_user)
        client.add_provider(name, "docker", config=config, max_workers=1)

        def container_token(worker_id: Any) -> str:
            (container,) = docker_client.containers.list(
                filters={"label": [f"hodei.provider={name}"]}
            )
            assert container.labels["hodei.worker_id"] == str(worker_id)
            inspected.append(container.attrs)
            env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
            assert env["HODEI_API_URL"] == server.url
            return env["HODEI_OTP_TOKEN"]

        try:
            report = _probe(
                client,
                secrets,
                provider=name,
                token_of=container_token,
                more_needles=("hodei_wkr_",),
            )
            (attrs,) = inspected
            env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
            api_tokens = list(server.tokens.values())
            # Spent: the token in the spec registers nothing any more.
            again = httpx.post(
                f"{server.url}/v1/worker/register", json={"token": env["HODEI_OTP_TOKEN"]}
            )
            assert again.status_code == 403 and again.json()["code"] == "TokenRejected"
        finally:
            for container in docker_client.containers.list(
                all=True, filters={"label": [f"hodei.provider={name}"]}
            ):
                container.remove(force=True)
            docker_client.close()
    spec = json.dumps(attrs)
    assert "HODEI_DATABASE_URL" not in env and "postgresql" not in spec
    assert not any(k.startswith(("HODEI_SECRET_KEY", "HODEI_API_TOKEN")) for k in env)
    assert secrets["db"] not in spec
    for needle in (key, "hodei_wkr_", *api_tokens):
        assert needle not in spec
    assert report["uid"] == 65534
    assert len(report["hodei_processes"]) >= 2, report  # the worker and its guard
    assert report["found"] == [], report
    assert report["reachable"] == [], report
    assert report["inherited_fds"] == [], report


@pytest.mark.docker
def test_a_job_in_the_real_worker_image_in_api_mode_finds_no_secret(
    pg_settings: Settings, secrets: dict[str, str], tmp_path: Path
) -> None:
    """The same in workers/Dockerfile's image, nothing mounted: its worker (uid 10001)
    talks to the API and runs the probe as its own uid, which only its being
    undumpable keeps out. HODEI_TEST_WORKER_IMAGE names another build of that image
    (one of this checkout's code, before .ci/build-images has rebuilt hodei-worker:ci)."""
    import httpx

    from tests.api_server import running_server
    from tests.docker_engine import engine
    from tests.images import WORKER_IMAGE, require_images

    image = os.environ.get("HODEI_TEST_WORKER_IMAGE", WORKER_IMAGE)
    docker_client = engine()
    require_images(docker_client, image)
    made = _client(pg_settings, secrets, job_user="")
    base = made.container.settings
    made.close()
    name = f"img{uuid.uuid4().hex[:8]}"
    envs: list[dict[str, str]] = []
    with (
        open(tmp_path / "server.log", "wb") as log,
        running_server(base, log=log, worker_api=True) as server,
    ):
        config = {"image": image, "network_mode": "host", "pull_policy": "never"}
        server.direct.add_provider(name, "docker", config=config, max_workers=1)

        def container_token(worker_id: Any) -> str:
            (container,) = docker_client.containers.list(
                filters={"label": [f"hodei.provider={name}"]}
            )
            envs.append(dict(item.split("=", 1) for item in container.attrs["Config"]["Env"]))
            return envs[-1]["HODEI_OTP_TOKEN"]

        try:
            report = _probe(
                server.direct,
                secrets,
                provider=name,
                token_of=container_token,
                more_needles=("hodei_wkr_",),
            )
            again = httpx.post(
                f"{server.url}/v1/worker/register", json={"token": envs[0]["HODEI_OTP_TOKEN"]}
            )
            assert again.status_code == 403
        finally:
            for container in docker_client.containers.list(
                all=True, filters={"label": [f"hodei.provider={name}"]}
            ):
                container.remove(force=True)
            docker_client.close()
    assert envs[0]["HODEI_API_URL"] == server.url and "HODEI_DATABASE_URL" not in envs[0]
    assert report["uid"] == 10001
    assert len(report["hodei_processes"]) >= 2, report  # the worker and its guard
    assert report["found"] == [], report
    assert report["reachable"] == [], report
    assert report["inherited_fds"] == [], report
