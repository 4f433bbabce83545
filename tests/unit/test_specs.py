"""JobSpec validation: good specs are accepted as given, bad ones name every problem."""

import dataclasses

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
    )
    assert JobSpec.from_dict(spec.to_dict()) == spec
    # to_dict spells the fields out: a field added to JobSpec must be added there too.
    assert spec.to_dict() == dataclasses.asdict(spec) | {
        "command": ["true"],
        "env": {"A": "1"},
        "labels": {"gpu": "true"},
        "regions": ["eu"],
    }


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
