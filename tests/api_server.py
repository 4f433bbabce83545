"""A real ``hodei server`` process on a free port, and clients of it, for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hodei.bootstrap import Container
from hodei.sdk import Client
from hodei.sdk_http import HttpClient
from hodei.settings import Settings
from tests.support import hodei_env

ROLES = ("viewer", "submitter", "operator", "admin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    """A running server, a direct database client beside it, and a token per role."""

    url: str
    process: subprocess.Popen[bytes]
    direct: Client
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str = "submitter") -> ApiClient:
        return ApiClient(self.url, self.tokens[role], direct=self.direct)

    def env(self, role: str = "submitter", **extra: str) -> dict[str, str]:
        """The environment of a CLI subprocess that talks to this server only."""
        env = hodei_env(self.direct.settings, **extra)
        for key in ("HODEI_DATABASE_URL", "HODEI_BROKER_URL", "HODEI_HOME"):
            env.pop(key, None)
        env.update(HODEI_API_URL=self.url, HODEI_API_TOKEN=self.tokens.get(role, ""))
        return env


class ApiClient(HttpClient):
    """An HttpClient whose ``container`` is the database behind the server: only for a
    test's own assertions and cleanup (``stop_workers``); every SDK call goes over HTTP."""

    def __init__(self, url: str, token: str, *, direct: Client) -> None:
        super().__init__(url, token)
        self._direct = direct

    @property
    def container(self) -> Container:
        return self._direct.container


@contextmanager
def running_server(
    settings: Settings,
    *,
    log: Any = None,
    tokens: dict[str, str] | None = None,
    worker_api: bool = False,
    port: int | None = None,
) -> Iterator[ApiServer]:
    """Start ``hodei server`` on ``settings`` (PostgreSQL or SQLite), with one token per
    role made directly on the database (or ``tokens``, for a second replica), and stop
    it (and what it launched) after. With ``worker_api``, the workers it (or the direct
    client beside it) launches are API-mode workers of this server
    (HODEI_WORKER_API_URL). ``port``: this one (a server restarted in its place), not a
    free one."""
    import dataclasses

    from tests.conftest import stop_workers

    port = free_port() if port is None else port
    url = f"http://127.0.0.1:{port}"
    if worker_api:
        settings = dataclasses.replace(settings, worker_api_url=url)
    direct = Client.from_env(**{f: getattr(settings, f) for f in settings.__dataclass_fields__})
    if tokens is None:
        tokens = {role: direct.create_api_token(f"test-{role}", role)[1] for role in ROLES}
    process = subprocess.Popen(
        [sys.executable, "-m", "hodei", "server", "--port", str(port)],
        env=hodei_env(settings),
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    server = ApiServer(url, process, direct, tokens)
    try:
        _wait_live(url, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stop_workers(direct)
        direct.close()


def _wait_live(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hodei server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("hodei server did not start within 30 s")


@contextmanager
def module_pg_settings(home: Path, template: str, redis_db_number: int) -> Iterator[Settings]:
    """Settings on a database of its own (a copy of the migrated template), for a server
    shared by a whole test module (``postgres_url`` is made per test)."""
    import uuid

    from tests.conftest import _admin_engine, _db_url
    from tests.services import REDIS_URL
    from tests.support import fast_settings

    name = f"hodei_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield fast_settings(
            home / ".hodei",
            database_url=_db_url(name),
            broker_url=f"{REDIS_URL.rstrip('/')}/{redis_db_number}",
        )
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
