"""JobSpec validation: good specs are accepted as given, bad ones name every problem."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hodei.domain.specs import JobSpec, RetryPolicy
from hodei.errors import InvalidJobSpec


def test_a_shell_string_runs_with_sh_and_gets_defaults() -> None:
    spec = JobSpec.create("echo $HOME | wc -c")
    assert spec.argv == ["/bin/sh", "-c", "echo $HOME | wc -c"]
    assert spec.name == "echo $HOME | wc -c"
    assert (spec.timeout_s, spec.max_attempts) == (3600, 1)


def test_an_argv_list_runs_as_given() -> None:
    spec = JobSpec.create(["python3", "-c", "print(1)"], name="py")
    assert spec.argv == ["python3", "-c", "print(1)"]
    assert spec.command_text == "python3 -c 'print(1)'"


def test_every_field_round_trips_through_json() -> None:
    spec = JobSpec.create(
        ["true"],
        name="n",
        env={"A": "1"},
        working_dir="/tmp",
        timeout_s=10,
        max_attempts=3,
        retry={"backoff_s": 2},
        labels={"gpu": "true"},
        regions=["eu"],
        provider="local",
        correlation_id="wf-1",
        idempotency_key="k1",
        priority=7,
        run_at=RUN_AT,
        concurrency_key="deploy-prod",
        max_concurrency=2,
        after=[str(AFTER)],
        after_any=True,
    )
    assert JobSpec.from_dict(spec.to_dict()) == spec
    # to_dict spells the fields out: a field added to JobSpec must be added there too;
    # all but secret_env, which is stored encrypted, apart from the spec.
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k != "secret_env"}
    assert spec.to_dict() == fields | {
        "command": ["true"],
        "env": {"A": "1"},
        "labels": {"gpu": "true"},
        "regions": ["eu"],
        "run_at": RUN_AT.isoformat(),
        "after": [str(AFTER)],
    }


RUN_AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
AFTER = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": ""}, "command must not be empty"),
        ({"command": []}, "command must not be empty"),
        ({"command": 42}, "command must be a string or a list of strings"),
        ({"command": "x", "name": ""}, "name must not be empty"),
        ({"command": "x", "name": "n" * 201}, "name must be at most 200 characters, got 201"),
        ({"command": "x", "env": {"1BAD": "v"}}, "env name '1BAD' is not a valid variable name"),
        ({"command": "x", "env": {"A": 1}}, "env A must be a string, got int"),
        ({"command": "x", "timeout_s": 0}, "timeout must be between 1s and 604800s, got 0s"),
        ({"command": "x", "timeout_s": 700000}, "timeout must be between 1s and 604800s"),
        ({"command": "x", "timeout_s": 1.5}, "timeout must be a whole number"),
        ({"command": "x", "max_attempts": 21}, "max_attempts must be between 1 and 20, got 21"),
        ({"command": "x", "max_attempts": 0}, "max_attempts must be between 1 and 20, got 0"),
        ({"command": "x", "working_dir": "rel/dir"}, "working_dir must be an absolute path"),
        ({"command": "x", "labels": {"bad key!": "v"}}, "label key 'bad key!' is not valid"),
        ({"command": "x", "correlation_id": "has space"}, "correlation_id must be 1..128"),
        ({"command": "x", "retry": {"nope": 1}}, "retry accepts backoff_s, factor"),
        ({"command": "x", "priority": 12}, "priority must be between 0 and 9, got 12"),
        ({"command": "x", "priority": -1}, "priority must be between 0 and 9"),
        ({"command": "x", "run_at": "tomorrow"}, "run_at must be an ISO 8601 time"),
        ({"command": "x", "run_at": "2030-01-01T10:00"}, "run_at must name its time zone"),
        ({"command": "x", "run_at": 5}, "run_at must be a datetime, got int"),
        (
            {"command": "x", "concurrency_key": "k", "max_concurrency": 0},
            "max_concurrency must be between 1 and 10000, got 0",
        ),
        ({"command": "x", "max_concurrency": 2}, "max_concurrency needs a concurrency_key"),
        ({"command": "x", "after": ["not-a-job"]}, "after: not a job id: 'not-a-job'"),
        ({"command": "x", "after": [True]}, "after must name job ids, not true/false"),
        ({"command": "x", "after": [-1]}, "after index -1 is negative"),
        ({"command": "x", "after_any": "yes"}, "after_any must be true or false, got str"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    command = kwargs.pop("command")
    with pytest.raises(InvalidJobSpec) as raised:
        JobSpec.create(command, **kwargs)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidJobSpec) as raised:
        JobSpec.create("x", timeout_s=0, max_attempts=99, env={"-": "v"})
    text = str(raised.value)
    assert text.count(";") == 2
    assert text.startswith("invalid job: ")


def test_unknown_fields_in_json_are_rejected() -> None:
    with pytest.raises(InvalidJobSpec, match="unknown field"):
        JobSpec.from_dict({"command": "x", "comand": "typo"})


def test_retry_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_s=1, factor=2, max_backoff_s=5)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


# Each of these raised Python's own error (AttributeError, TypeError, ValueError,
# OverflowError, UnicodeEncodeError) or was accepted and failed later in the database
# or at spawn; each must be one InvalidJobSpec line instead.
_NAN, _INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # wrong types
        ({"labels": ["a"]}, "labels must be a mapping of keys to strings, got list"),
        ({"retry": 5}, "retry must be a RetryPolicy or a mapping, got int"),
        ({"retry": {"backoff_s": "x"}}, "retry backoff_s must be a number, got str"),
        ({"regions": 5}, "regions must be a list of strings, got int"),
        ({"regions": [None]}, "regions must be non-empty strings"),
        ({"env": {"A": None}}, "env A must be a string, got NoneType"),
        ({"env": {1: "v"}}, "env name 1 is not a valid variable name"),
        ({"name": 5}, "name must be a string, got int"),
        ({"working_dir": 5}, "working_dir must be an absolute path, got 5"),
        ({"provider": 5}, "provider must be 1..63 characters"),
        ({"max_attempts": True}, "max_attempts must be a whole number, got bool"),
        ({"timeout_s": "10"}, "timeout must be a whole number, got str"),
        # numbers that are not finite or do not fit
        ({"timeout_s": _NAN}, "timeout must be a finite number, got nan"),
        ({"timeout_s": _INF}, "timeout must be a finite number, got inf"),
        ({"timeout_s": 10**400}, "timeout must be between 1s and 604800s, got a number too large"),
        ({"max_attempts": 10**400}, "max_attempts must be between 1 and 20"),
        ({"max_attempts": _NAN}, "max_attempts must be a finite number"),
        ({"retry": {"backoff_s": _NAN}}, "retry backoff_s must be a finite number"),
        ({"retry": {"factor": _INF}}, "retry factor must be a finite number"),
        ({"retry": {"max_backoff_s": -1}}, "retry max_backoff_s must be between 0s and"),
        ({"retry": {"backoff_s": 10**400}}, "retry backoff_s must be between 0s and"),
        # NUL bytes and lone surrogates in every text field
        ({"name": "\x00"}, "name must not contain NUL bytes"),
        ({"name": "\ud800"}, "name must be valid UTF-8 text (it has a lone surrogate)"),
        ({"name": "a\nb"}, "name must not contain control characters"),
        ({"idempotency_key": "\x00"}, "idempotency_key must not contain NUL bytes"),
        ({"idempotency_key": "k\udcff"}, "idempotency_key must be valid UTF-8"),
        ({"env": {"A": "\x00"}}, "env A must not contain NUL bytes"),
        ({"env": {"A": "\udcff"}}, "env A must be valid UTF-8"),
        ({"labels": {"a": "\x00"}}, "label a must not contain NUL bytes"),
        ({"labels": {"a": "\ud800"}}, "label a must be valid UTF-8"),
        ({"regions": ["\x00"]}, "region '\\x00' must not contain NUL bytes"),
        ({"regions": ["eu\ud800"]}, "must be valid UTF-8"),
        ({"provider": "\x00"}, "provider must not contain NUL bytes"),
        ({"provider": "\ud800"}, "provider must be valid UTF-8"),
        ({"working_dir": "/tmp/\x00"}, "working_dir must not contain NUL bytes"),
        ({"working_dir": "/\udcff"}, "working_dir must be valid UTF-8"),
        # an anchored `$` accepted a trailing newline
        ({"correlation_id": "abc\n"}, "correlation_id must be 1..128"),
        ({"labels": {"a\n": "v"}}, "label key 'a\\n' is not valid"),
        ({"env": {"A\n": "v"}}, "env name 'A\\n' is not a valid variable name"),
    ],
)
def test_every_field_is_type_checked_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidJobSpec) as raised:
        JobSpec.create("true", **kwargs)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("\ud800", "command must be valid UTF-8 text (it has a lone surrogate)"),
        ("echo \x00", "command must not contain NUL bytes"),
        (["\x00"], "command argument 0 must not contain NUL bytes"),
        (["echo", "\udcff"], "command argument 1 must be valid UTF-8"),
        (None, "command must be a string or a list of strings, got NoneType"),
        (b"true", "command must be a string or a list of strings, got bytes"),
        ({"a": 1}, "command must be a string or a list of strings, got dict"),
    ],
)
def test_a_command_that_cannot_be_stored_or_run_is_refused(command: object, message: str) -> None:
    with pytest.raises(InvalidJobSpec) as raised:
        JobSpec.create(command)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_none_means_the_default_for_every_optional_field() -> None:
    spec = JobSpec.create("true", env=None, labels=None, regions=None, retry=None)
    assert (dict(spec.env), dict(spec.labels), spec.regions) == ({}, {}, ())


def test_the_command_and_env_must_fit_what_the_kernel_execs() -> None:
    from hodei.domain.specs import MAX_ARG_BYTES, MAX_COMMAND_ENV_BYTES

    # One string over the per-string limit (the kernel's is 128 KiB)...
    with pytest.raises(InvalidJobSpec, match="env BIG must be at most 64 KiB"):
        JobSpec.create("true", env={"BIG": "x" * (1 << 20)})
    with pytest.raises(InvalidJobSpec, match="command must be at most 64 KiB, got 1024 KiB"):
        JobSpec.create("echo " + "x" * (1 << 20))
    with pytest.raises(InvalidJobSpec, match="command argument 1 must be at most 64 KiB"):
        JobSpec.create(["echo", "é" * MAX_ARG_BYTES])  # bytes count, not characters
    # ...and many strings each under it but together over the total.
    many = {f"V{i}": "x" * 60_000 for i in range(MAX_COMMAND_ENV_BYTES // 60_000 + 1)}
    with pytest.raises(InvalidJobSpec, match="command and env together must be at most 512 KiB"):
        JobSpec.create("true", env=many)
    # Right at the limit is fine.
    JobSpec.create("true", env={"OK": "x" * (MAX_ARG_BYTES - 3)})


def test_a_spec_built_by_hand_is_validated_when_submitted() -> None:
    bad = JobSpec(name="n\x00", command="true")
    with pytest.raises(InvalidJobSpec, match="name must not contain NUL bytes"):
        bad.validated()
    good = JobSpec.create("true")
    assert good.validated() is good
    assert dataclasses.replace(good, name="x").validated().name == "x"


def test_numbers_that_are_whole_and_in_range_are_kept() -> None:
    spec = JobSpec.create("true", timeout_s=60.0, max_attempts=3, retry={"backoff_s": 0})
    assert (spec.timeout_s, spec.max_attempts, spec.retry.backoff_s) == (60, 3, 0.0)
    assert isinstance(spec.timeout_s, int)


def test_gates_default_to_none_and_a_key_to_one_slot() -> None:
    plain = JobSpec.create("x")
    assert (plain.priority, plain.run_at, plain.after, plain.gated) == (5, None, (), False)
    keyed = JobSpec.create("x", concurrency_key="deploy")
    assert (keyed.max_concurrency, keyed.gated) == (1, True)


def test_run_at_may_be_a_delay_from_now() -> None:
    before = datetime.now(UTC)
    spec = JobSpec.create("x", run_at=timedelta(minutes=10))
    assert spec.run_at is not None
    assert (
        before + timedelta(minutes=10) <= spec.run_at <= datetime.now(UTC) + timedelta(minutes=10)
    )


def test_after_takes_ids_and_batch_indices_once_each() -> None:
    spec = JobSpec.create("x", after=[str(AFTER), AFTER, 0, 0])
    assert spec.after == (AFTER, 0)


def test_run_at_is_at_most_100_years_from_now_either_way() -> None:
    """One bound for the CLI, the SDK and the API: further off is a typo, and near year
    1 or 9999 the time may not exist in UTC (where it is stored)."""
    for run_at in (
        "9999-12-31T23:59:00-23:00",
        "0001-01-01T00:00:00+23:00",
        timedelta(days=10**6),
        timedelta(days=-999_999_999),
        datetime.now(UTC) + timedelta(days=100 * 365 + 1),
    ):
        with pytest.raises(InvalidJobSpec, match="run_at must be at most 100 years from now"):
            JobSpec.create("x", run_at=run_at)
    assert JobSpec.create("x", run_at=timedelta(days=100 * 365)).run_at is not None
    assert JobSpec.create("x", run_at="2000-01-01T00:00:00+00:00").run_at is not None
