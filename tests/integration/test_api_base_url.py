"""HODEI_API_URL that is not the hodei server's base URL (``.../v1`` appended, another
path, another server) is a one-line configuration error that says what to fix, not a
bare ``Not Found`` that reads like a missing job."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hodei.errors import InvalidConfiguration, JobNotFound
from tests.api_server import ApiServer


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hodei", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )


def _one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hodei: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.postgres
@pytest.mark.redis
def test_an_api_url_with_v1_appended_names_the_base_url(api_server: ApiServer) -> None:
    env = {**api_server.env("viewer"), "HODEI_API_URL": api_server.url + "/v1"}
    # It was `hodei: error: Not Found`, exit 3, for every command.
    for args in (
        ("job", "list"),
        ("status",),
        ("job", "show", "0" * 8 + "-0000-0000-0000-" + "0" * 12),
    ):
        line = _one_line(_cli(env, *args), InvalidConfiguration.exit_code)
        assert line == (
            f"hodei: error: HODEI_API_URL should be the hodei server's base URL"
            f" ({api_server.url}), not {api_server.url}/v1: hodei adds /v1 itself"
        )
    other = {**api_server.env("viewer"), "HODEI_API_URL": api_server.url + "/api/"}
    _one_line(
        _cli(other, "job", "list"),
        InvalidConfiguration.exit_code,
        f"the hodei API at {api_server.url}/api has no /v1/jobs (404 Not Found)",
        "HODEI_API_URL should be the hodei server's base URL (http://host:port)",
    )
    # A 404 that is hodei's own answer is still what it was.
    missing = _cli(api_server.env("viewer"), "job", "show", "00000000-0000-4000-8000-000000000000")
    _one_line(missing, JobNotFound.exit_code, "00000000-0000-4000-8000-000000000000")


class _NotHodei(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def not_hodei() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotHodei)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_hodei_is_named_as_the_wrong_url(
    tmp_path: Path, not_hodei: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env.update(HODEI_API_URL=not_hodei, HODEI_API_TOKEN="hodei_pat_x", HOME=str(tmp_path))
    _one_line(
        _cli(env, "job", "list"),
        InvalidConfiguration.exit_code,
        f"the hodei API at {not_hodei} has no /v1/jobs (404 Not Found)",
    )
