"""Provider configuration is validated per type, with one-line errors; the circuit
breaker moves closed -> open -> half-open -> closed as documented."""

from __future__ import annotations

from typing import Any

import pytest

from hodei.errors import CircuitOpen, InvalidConfiguration
from hodei.providers.breaker import BreakerState, CircuitBreaker
from hodei.providers.config import parse_config_text, validate_config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{",
            "--config is not valid JSON: Expecting property name enclosed in double quotes "
            "at line 1 column 2",
        ),
        ('{"image": "x",}', "at line 1 column 15"),  # the wording varies by Python version
        ("[1]", "--config must be a JSON object, not list"),
    ],
)
def test_bad_json_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        parse_config_text(text)
    assert str(caught.value).endswith(message)
    assert str(caught.value).startswith("--config ")


@pytest.mark.parametrize(
    ("provider_type", "config", "message"),
    [
        ("podman", {}, "unknown provider type 'podman'; use one of local, docker, kubernetes"),
        ("docker", {}, "invalid docker config: missing field image"),
        (
            "docker",
            {"image": "w:1", "imagen": "typo"},
            "invalid docker config: unknown field imagen",
        ),
        (
            "docker",
            {"image": "w:1", "mem_limit": "lots"},
            "invalid docker config: mem_limit: must look like 512m or 2g",
        ),
        (
            "docker",
            {"image": "w:1", "pull_policy": "sometimes"},
            "invalid docker config: pull_policy: Input should be 'always', 'if_not_present' or "
            "'never'",
        ),
        (
            "docker",
            {"image": "w:1", "cpus": 0},
            "invalid docker config: cpus: Input should be greater than 0",
        ),
        ("kubernetes", {"image": "w:1"}, "invalid kubernetes config: missing field namespace"),
        (
            "kubernetes",
            {"namespace": "Bad_NS", "image": "w:1"},
            "invalid kubernetes config: namespace: must be a DNS label (lowercase letters, digits "
            "and -)",
        ),
        (
            "kubernetes",
            {"namespace": "ns", "image": "w", "tolerations": [{"operator": "Maybe"}]},
            "invalid kubernetes config: tolerations.0.operator: Input should be 'Equal' or "
            "'Exists'",
        ),
        (
            "kubernetes",
            {},
            "invalid kubernetes config: missing field namespace; missing field image",
        ),
        ("local", {"image": "x"}, "invalid local config: unknown field image"),
    ],
)
def test_config_errors_name_every_problem_in_one_line(
    provider_type: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        validate_config(provider_type, config)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_valid_configs_are_normalised() -> None:
    assert validate_config("local", {}) == {}
    assert validate_config("docker", {"image": "w:1", "cpus": 1, "pull_policy": "never"}) == {
        "image": "w:1",
        "cpus": 1.0,
        "pull_policy": "never",
    }
    k8s = validate_config(
        "kubernetes",
        {
            "namespace": "hodei",
            "image": "w:1",
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        },
    )
    assert k8s == {
        "namespace": "hodei",
        "image": "w:1",
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
    }


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise ConnectionError("engine down")


def test_breaker_opens_after_5_failures_half_opens_after_60s_closes_after_3_trials() -> None:
    clock = FakeTime()
    moves: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "dock", monotonic=clock, listener=lambda _n, old, new, _why: moves.append((old, new))
    )
    for _ in range(4):
        with pytest.raises(ConnectionError):
            breaker.call(_fail, counts=lambda e: True)
    assert breaker.state is BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        breaker.call(_fail, counts=lambda e: True)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="circuit breaker open for another 60s"):
        breaker.call(lambda: "never called", counts=lambda e: True)

    clock.now += 60
    assert breaker.state is BreakerState.HALF_OPEN
    assert [breaker.call(lambda: "ok", counts=lambda e: True) for _ in range(2)] == ["ok", "ok"]
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.call(lambda: None, counts=lambda e: True)
    assert breaker.state is BreakerState.CLOSED
    assert moves == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_a_failed_trial_reopens_and_refusals_do_not_count() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker("k8s", failure_threshold=2, reset_timeout_s=10, monotonic=clock)
    for _ in range(5):  # a 404 for a missing image is an answer, not an outage
        with pytest.raises(LookupError):
            breaker.call(
                lambda: (_ for _ in ()).throw(LookupError("no such image")),
                counts=lambda e: not isinstance(e, LookupError),
            )
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(_fail, counts=lambda e: True)
    clock.now += 10
    with pytest.raises(ConnectionError):
        breaker.call(_fail, counts=lambda e: True)
    assert breaker.state is BreakerState.OPEN
