"""Property: every input to ``Client.submit`` and to ``hodei job submit`` is either
refused with hodei's own one-line error (and its documented exit code), or accepted,
stored, and read back unchanged through ``show``, ``list --output json``,
``timeline``, ``logs`` and ``diagnose``, on SQLite and on PostgreSQL.

Hypothesis draws each keyword from plausible values and from anything at all: wrong
types, huge and non-finite numbers, any unicode (lone surrogates, NUL and controls
included). A fixed seed and a bounded number of examples keep the run repeatable
and short. The local provider gets ``max_workers=0``: jobs are stored PENDING and no
worker is launched, which is all the property needs.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hodei.cli.main import cli
from hodei.domain.records import Job
from hodei.errors import HodeiError, InvalidJobSpec, ProviderNotFound
from hodei.sdk import Client

pytestmark = pytest.mark.slow

# Every code point, and often the ones that broke hodei: NUL, lone surrogates (what
# Python makes of bytes that are not UTF-8), controls, a newline before the end.
SPECIAL = ["\x00", "\ud800", "\udcff", "\n", "\t", "\x7f", "\x85", "é", "\U0001f600"]
ANY_CHAR = st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=()))
ANY_TEXT = st.text(ANY_CHAR, max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=700_000),
    st.integers(),
    st.just(10**400),
    st.floats(),
    st.floats(min_value=0, max_value=700_000),
)
WILD: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    ANY_TEXT,
    st.binary(max_size=4),
    st.lists(ANY_TEXT, max_size=3),
    st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=2),
)
ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
LABEL_KEYS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,8}", fullmatch=True)
PRINTABLE = st.text(st.sampled_from(string.ascii_letters + string.digits + " -_.é€"), max_size=12)

KEYWORDS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.none(), PRINTABLE, ANY_TEXT, WILD),
    "env": st.one_of(
        st.none(), st.dictionaries(ENV_NAMES, st.one_of(PRINTABLE, ANY_TEXT), max_size=3), WILD
    ),
    "working_dir": st.one_of(st.none(), st.just("/tmp"), ANY_TEXT.map(lambda t: "/" + t), WILD),
    "timeout_s": st.one_of(st.none(), NUMBERS, WILD),
    "max_attempts": st.one_of(st.none(), st.integers(0, 25), NUMBERS, WILD),
    "retry": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {}, optional={"backoff_s": NUMBERS, "factor": NUMBERS, "max_backoff_s": NUMBERS}
        ),
        WILD,
    ),
    "labels": st.one_of(
        st.none(), st.dictionaries(LABEL_KEYS, st.one_of(PRINTABLE, ANY_TEXT), max_size=3), WILD
    ),
    "regions": st.one_of(st.none(), st.lists(st.one_of(PRINTABLE, ANY_TEXT), max_size=3), WILD),
    "provider": st.one_of(st.none(), st.just("local"), st.just("nope"), ANY_TEXT, WILD),
    "correlation_id": st.one_of(
        st.none(), st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True), ANY_TEXT, WILD
    ),
    "idempotency_key": st.one_of(st.none(), PRINTABLE, ANY_TEXT, WILD),
}
# Values that are mostly valid, so that many examples are accepted and read back.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": PRINTABLE,
    "env": st.dictionaries(ENV_NAMES, st.one_of(PRINTABLE, ANY_TEXT), max_size=3),
    "working_dir": st.just("/tmp"),
    "timeout_s": st.integers(0, 700_000),
    "max_attempts": st.integers(0, 21),
    "retry": st.fixed_dictionaries({}, optional={"backoff_s": st.floats(0, 400)}),
    "labels": st.dictionaries(LABEL_KEYS, PRINTABLE, max_size=3),
    "regions": st.lists(PRINTABLE, max_size=3),
    "provider": st.sampled_from(["local", "nope"]),
    "correlation_id": st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True),
    "idempotency_key": PRINTABLE,
}
SDK_KEYWORDS = st.booleans().flatmap(
    lambda wild: st.fixed_dictionaries({}, optional=KEYWORDS if wild else PLAUSIBLE)
)
GOOD_COMMANDS = st.one_of(
    st.text(ANY_CHAR, min_size=1, max_size=20),
    PRINTABLE.map(lambda t: "echo " + t),
    st.lists(st.one_of(PRINTABLE, ANY_TEXT), min_size=1, max_size=4),
)
# One command in four is anything at all (one_of would weigh each of WILD's branches).
COMMANDS = st.integers(0, 3).flatmap(lambda i: WILD if i == 0 else GOOD_COMMANDS)

PROPERTY = settings(
    derandomize=True,  # a fixed seed: the same examples on every run
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def quiet(client: Client) -> Iterator[Client]:
    """The parametrized client, with a local provider that launches no worker."""
    client.update_provider("local", max_workers=0)
    yield client


def invoke(client: Client, *args: str) -> Result:
    """``hodei ARGS`` in this process, against the client's database."""
    env = client.settings.child_environment()
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def assert_refused_in_one_line(result: Result, codes: set[int]) -> None:
    assert result.exit_code in codes, (result.exit_code, result.output, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("hodei: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("hodei: error: "), errors[0]
    assert result.stderr.splitlines()[-1] == errors[0]


def read_back(client: Client, job: Job) -> None:
    """The job as every reader shows it equals the job as stored."""
    spec = job.spec
    shown = invoke(client, "job", "show", str(job.id), "--output", "json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["id"], data["name"], data["command"]) == (str(job.id), job.name, spec.command_text)
    assert data["labels"] == dict(spec.labels)
    assert (data["correlation_id"], data["idempotency_key"]) == (
        spec.correlation_id,
        spec.idempotency_key,
    )
    assert data["max_attempts"] == spec.max_attempts

    listed = invoke(client, "job", "list", "--output", "json", "--limit", "1000")
    assert listed.exit_code == 0, listed.stderr
    names = {row["id"]: row["name"] for row in json.loads(listed.stdout)}
    assert names[str(job.id)] == job.name

    timeline = invoke(client, "job", "timeline", str(job.id), "--output", "json")
    assert timeline.exit_code == 0, timeline.stderr
    created = next(e for e in json.loads(timeline.stdout) if e["event_type"] == "JobCreated")
    summary = created["payload"]["spec"]
    assert (summary["name"], summary["labels"]) == (job.name, dict(spec.labels))
    assert summary["env_keys"] == sorted(spec.env)
    assert (summary["timeout_s"], summary["regions"]) == (spec.timeout_s, list(spec.regions))

    logs = invoke(client, "job", "logs", str(job.id))
    assert (logs.exit_code, logs.stdout) == (0, "")
    diagnosis = invoke(client, "job", "diagnose", str(job.id), "--output", "json")
    assert diagnosis.exit_code == 0, diagnosis.stderr
    assert json.loads(diagnosis.stdout)["job_id"] == str(job.id)


def expect_given(job: Job, command: Any, given: Mapping[str, Any]) -> None:
    """An accepted job keeps the values it was given."""
    spec = job.spec
    assert spec.command == (command if isinstance(command, str) else tuple(command))
    if given.get("name") is not None:
        assert job.name == given["name"]
    assert dict(spec.env) == dict(given.get("env") or {})
    assert dict(spec.labels) == dict(given.get("labels") or {})
    for key in ("provider", "correlation_id", "idempotency_key", "working_dir"):
        assert getattr(spec, key) == given.get(key), key
    if given.get("timeout_s") is not None:
        assert spec.timeout_s == given["timeout_s"]
    if given.get("max_attempts") is not None:
        assert spec.max_attempts == job.max_attempts == given["max_attempts"]


@PROPERTY
@given(command=COMMANDS, keywords=SDK_KEYWORDS)
# The cases of the issue, always tried first.
@example(command="\ud800", keywords={})
@example(command=["\x00"], keywords={})
@example(command="true", keywords={"name": "\x00", "labels": ["a"]})
@example(command="true", keywords={"correlation_id": "abc\n", "regions": 5})
@example(command="true", keywords={"env": {"K": "\udcff"}, "retry": {"backoff_s": "x"}})
@example(command="true", keywords={"timeout_s": float("nan"), "max_attempts": 10**400})
@example(command="true", keywords={"env": {"BIG": "x" * (1 << 20)}, "provider": "nope"})
def test_every_sdk_submit_is_refused_in_one_line_or_read_back_unchanged(
    quiet: Client, command: Any, keywords: dict[str, Any]
) -> None:
    earlier = _job_with_key(quiet, keywords.get("idempotency_key"))
    try:
        job = quiet.submit(command, **keywords)
    except HodeiError as exc:
        assert isinstance(exc, InvalidJobSpec | ProviderNotFound), repr(exc)
        assert exc.exit_code in (2, 3)
        assert "\n" not in str(exc) and len(str(exc)) < 2000
        event(f"refused: {type(exc).__name__}")
        for why in ("NUL", "surrogate", "control"):
            if why in str(exc):
                event(f"refused for a {why}")
        return
    event("accepted")
    stored = quiet.get(job.id)
    assert stored.spec == job.spec
    if earlier is not None:
        assert job.id == earlier.id  # the key was seen: the first job comes back
    else:
        expect_given(stored, command, keywords)
    read_back(quiet, stored)


def _job_with_key(client: Client, key: object) -> Job | None:
    """The job an earlier example stored with this idempotency key, if any."""
    if not isinstance(key, str) or "\x00" in key or not key.isprintable():
        return None  # not a key the database could hold (nor one hodei accepts)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    with client.container.store.reading() as tx:
        return tx.jobs.get_by_idempotency_key(key)


NUMBER_TEXT = st.one_of(
    NUMBERS.map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "9" * 30, "", " 5", "0x10", "٣"]),
    ANY_TEXT,
)
CLI_TEXT = st.one_of(PRINTABLE, ANY_TEXT)
PAIRS = st.lists(
    st.one_of(st.tuples(ENV_NAMES, CLI_TEXT).map("=".join), CLI_TEXT), min_size=1, max_size=3
)
CLI_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "--name": CLI_TEXT,
    "--env": PAIRS,
    "--workdir": st.one_of(st.just("/tmp"), CLI_TEXT),
    "--timeout": NUMBER_TEXT,
    "--retries": NUMBER_TEXT,
    "--backoff": NUMBER_TEXT,
    "--label": st.lists(
        st.one_of(st.tuples(LABEL_KEYS, PRINTABLE).map("=".join), CLI_TEXT), min_size=1, max_size=3
    ),
    "--region": st.lists(CLI_TEXT, min_size=1, max_size=2),
    "--correlation-id": st.one_of(
        st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True), CLI_TEXT
    ),
    "--idempotency-key": CLI_TEXT,
    "--provider": st.one_of(st.sampled_from(["local", "nope"]), CLI_TEXT),
}


WORDS = st.text(st.sampled_from(string.ascii_letters + "é€"), min_size=1, max_size=8)
PLAUSIBLE_CLI: dict[str, st.SearchStrategy[Any]] = {
    "--name": WORDS,
    "--env": st.lists(st.tuples(ENV_NAMES, PRINTABLE).map("=".join), min_size=1, max_size=3),
    "--workdir": st.just("/tmp"),
    "--timeout": st.integers(1, 1000).map(str),
    "--retries": st.integers(0, 3).map(str),
    "--backoff": st.floats(0, 300).map(str),
    "--label": st.lists(st.tuples(LABEL_KEYS, WORDS).map("=".join), min_size=1, max_size=2),
    "--region": st.lists(WORDS, min_size=1, max_size=2),
    "--correlation-id": st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True),
    "--idempotency-key": WORDS,
    "--provider": st.just("local"),
}
CLI_SUBMITS = st.booleans().flatmap(
    lambda wild: st.tuples(
        st.fixed_dictionaries({}, optional=CLI_OPTIONS if wild else PLAUSIBLE_CLI),
        st.lists(CLI_TEXT if wild else WORDS, min_size=1, max_size=3),
    )
)


def _pairs(values: list[str]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values)


@settings(PROPERTY, max_examples=80)
@given(submit=CLI_SUBMITS)
@example(submit=({"--env": ["K=\udcff"], "--name": "\udcff"}, ["true"]))
@example(submit=({"--timeout": "nan", "--backoff": "inf"}, ["true"]))
@example(submit=({"--provider": "nope"}, ["true"]))
@example(submit=({"--correlation-id": "abc\n"}, ["\udced\udca7\udc93"]))
@example(submit=({"--timeout": "\udd00"}, [""]))
def test_every_cli_submit_is_refused_in_one_line_or_read_back_unchanged(
    quiet: Client, submit: tuple[dict[str, Any], list[str]]
) -> None:
    options, command = submit
    args = ["job", "submit"]
    for option, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            args += [option, item]
    earlier = _job_with_key(quiet, options.get("--idempotency-key"))
    result = invoke(quiet, *args, "--", *command)
    if result.exit_code != 0:
        assert_refused_in_one_line(result, {2, 3})
        event(f"refused with exit {result.exit_code}")
        return
    event("accepted")
    job = quiet.get(result.stdout.strip())
    if earlier is not None:
        assert job.id == earlier.id
    else:
        spec = job.spec
        assert spec.command == (command[0] if len(command) == 1 else tuple(command))
        if "--name" in options:
            assert job.name == options["--name"]
        assert dict(spec.env) == _pairs(options.get("--env", []))
        assert dict(spec.labels) == _pairs(options.get("--label", []))
        for option, field in (
            ("--correlation-id", "correlation_id"),
            ("--idempotency-key", "idempotency_key"),
            ("--provider", "provider"),
            ("--workdir", "working_dir"),
        ):
            assert getattr(spec, field) == options.get(option), field
        if "--timeout" in options:
            assert spec.timeout_s == float(options["--timeout"])
        assert job.max_attempts == int(options.get("--retries", 0)) + 1
    read_back(quiet, job)
