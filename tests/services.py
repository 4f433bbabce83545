"""Which test services are reachable: skip on a laptop, fail in CI (``CI`` set)."""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlparse

import pytest

POSTGRES_URL = os.environ.get(
    "HODEI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HODEI_TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("HODEI_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

IN_CI = bool(os.environ.get("CI"))


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def require(name: str, url: str, default_port: int) -> None:
    """Skip the test when the service is down, unless in CI, where that is a failure."""
    if reachable(url, default_port):
        return
    unavailable(
        f"{name} is not reachable at {urlparse(url).netloc}",
        in_ci="CI is set, so service-backed tests must not skip",
    )


def unavailable(message: str, *, in_ci: str = "CI is set, so this test must not skip") -> NoReturn:
    """Skip a test whose prerequisite is missing here; under CI, where every test must
    run, fail instead, so a skip can never pass for a green run."""
    if not IN_CI:
        pytest.skip(message)
    pytest.fail(f"{message} ({in_ci})")
