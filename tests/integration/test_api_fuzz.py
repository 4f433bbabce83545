"""``hodei server`` fuzzed from its own OpenAPI schema (schemathesis): no 500, no
response outside its documented status codes, content types and schemas, and no
traceback in any body. Bounded examples and a fixed seed, so a run is repeatable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_server import ApiServer, module_pg_settings, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

EXAMPLES = 15
"""Examples per operation (about 30 operations)."""


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: str, redis_db_number: int
) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("fuzz")
    with (
        module_pg_settings(home, postgres_template, redis_db_number) as settings_,
        running_server(settings_) as server,
    ):
        # Nothing fuzzed may run: no provider can launch a worker (the provider routes
        # that could change that are left out below).
        server.direct.disable_provider("local")
        yield server


# Streams never end by themselves; these could make a fuzzed command run.
SKIPPED = r"^/v1/(events/stream|providers(/\{name\}(/enable)?)?)$"


STATUSES: list[int] = []


def no_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    STATUSES.append(response.status_code)
    body = response.text if hasattr(response, "text") else ""
    assert "Traceback" not in body and 'File "' not in body, "a traceback in the body"
    return None


def test_the_api_keeps_to_its_schema(fuzzed_server: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzed_server.tokens['admin']}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        no_traceback,
    ]
    failures: list[str] = []
    operations = 0
    for result in schema.exclude(path_regex=SKIPPED).get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                base_url=fuzzed_server.url, headers=headers, checks=checks, timeout=90
            )

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
    assert operations > 25
    assert len(STATUSES) > operations * 5, "the fuzzer sent too few requests"
    print(f"fuzzed {operations} operations with {len(STATUSES)} requests:", sorted(set(STATUSES)))
    assert not failures, "\n\n".join(failures)
