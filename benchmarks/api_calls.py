"""Where an API submit's time goes: kinds of call to one ``hodei server`` interleaved
call by call from one process, so each sees the same load (PostgreSQL + Redis).

- local backend submit (``Client``): the baseline of ``benchmarks/api.py``'s ratio;
- API submit through the SDK (``HttpClient``), and the same through httpx (an
  injected ``httpx.HTTPTransport`` keeps ``HttpClient`` on httpx, as before
  hodei/sdk_http_pool.py);
- the bare round trips: ``GET /health/live`` (no authentication, no thread) through
  ``http.client`` and through httpx, ``GET /v1/whoami`` (authentication), and a raw
  ``POST /v1/jobs`` through ``http.client`` (the server's whole submit, no SDK).

Prints the p50 and mean of each in ms. No worker runs: the jobs wait in Redis.

    .venv/bin/python benchmarks/api_calls.py [--n 400]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from collections.abc import Callable

import httpx
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common
from api import _free_port, _live


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    from hodei.sdk import Client
    from hodei.sdk_http import HttpClient

    common.flush_redis(args.broker_url)
    with (
        common.scratch_home("hodei-bench-api-calls-") as home,
        common.scratch_database(args.database_url) as database_url,
    ):
        procs = common.Processes(home)
        env = common.process_env(
            HODEI_DATABASE_URL=database_url,
            HODEI_BROKER_URL=args.broker_url,
            HODEI_HOME=str(home),
            HODEI_LOG_LEVEL="WARNING",
        )
        local = Client.from_env(database_url=database_url, broker_url=args.broker_url, home=home)
        clients: list[HttpClient] = []
        try:
            with common.sql_engine(database_url).begin() as conn:
                conn.execute(sa.text("UPDATE provider_configs SET max_workers = 0"))
            _, token = local.create_api_token("bench", "submitter")
            port = _free_port()
            procs.start("server", common.hodei_cli("server", "--port", str(port)), env)
            url = f"http://127.0.0.1:{port}"
            common.wait_for(lambda: _live(url), timeout=60, what="hodei server to answer")
            sdk = HttpClient(url, token)
            via_httpx = HttpClient(url, token, transport=httpx.HTTPTransport())
            clients += [sdk, via_httpx]
            raw_httpx = httpx.Client(base_url=url)
            raw = http.client.HTTPConnection("127.0.0.1", port)
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = json.dumps({"command": "true", "name": "raw"}).encode()

            def raw_call(method: str, path: str, payload: bytes | None = None) -> None:
                raw.request(method, path, payload, auth)
                response = raw.getresponse()
                response.read()
                if response.status >= 300:
                    raise RuntimeError(f"{method} {path}: HTTP {response.status}")

            kinds: dict[str, Callable[[], object]] = {
                "local backend submit": lambda: local.submit("true", name="local"),
                "API submit, SDK": lambda: sdk.submit("true", name="sdk"),
                "API submit, SDK through httpx": lambda: via_httpx.submit("true", name="httpx"),
                "raw POST /v1/jobs, http.client": lambda: raw_call("POST", "/v1/jobs", body),
                "GET /v1/whoami, SDK": sdk.whoami,
                "GET /health/live, http.client": lambda: raw_call("GET", "/health/live"),
                "GET /health/live, httpx": lambda: raw_httpx.get("/health/live"),
            }
            for call in kinds.values():  # connections, pools, imports
                for _ in range(20):
                    call()
            took: dict[str, list[float]] = {name: [] for name in kinds}
            for _ in range(args.n):
                for name, call in kinds.items():
                    t0 = time.perf_counter()
                    call()
                    took[name].append((time.perf_counter() - t0) * 1000)
            raw.close()
            raw_httpx.close()
            return took
        finally:
            for client in clients:
                client.close()
            procs.stop_all()
            local.close()
            common.flush_redis(args.broker_url)


def main() -> int:
    parser = argparse.ArgumentParser(description="Kinds of API call, interleaved: p50 ms.")
    parser.add_argument("--n", type=int, default=400, help="calls of each kind")
    common.add_store_args(parser)
    args = parser.parse_args()
    with common.exit_on_signals(), common.broker_lock(args.broker_url):
        took = run(args)
    print(f"{'':34} {'p50 ms':>7} {'mean ms':>8}")
    for name, values in took.items():
        print(f"{name:34} {common.median(values):7.3f} {sum(values) / len(values):8.3f}")
    print(f"load average {os.getloadavg()[0]:.1f}; reproduce: {common.command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
