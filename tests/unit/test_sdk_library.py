"""The SDK as a library: typed, introspectable, with a namespace of only its API."""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path

import pytest

import hodei
from hodei.domain.specs import JobSpec
from hodei.errors import ClientClosed, HodeiError
from hodei.sdk import Client


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("hodei").joinpath("py.typed").is_file()


def test_submit_takes_the_fields_of_a_spec_as_typed_keywords() -> None:
    submit = inspect.signature(Client.submit).parameters
    create = inspect.signature(JobSpec.create).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in submit.values())
    fields = [n for n in create if n not in ("cls", "command")]
    assert [n for n in submit if n not in ("self", "spec")] == fields
    for name in fields:
        assert submit[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert submit[name].annotation == create[name].annotation, name


def test_the_public_namespace_is_the_api() -> None:
    assert sorted(hodei.__all__) == [
        "Client",
        "HodeiError",
        "Job",
        "JobSpec",
        "JobState",
        "LogLine",
        "RetryPolicy",
        "errors",
    ]
    for name in hodei.__all__:
        assert getattr(hodei, name) is not None
    assert sorted(n for n in dir(hodei) if not n.startswith("__")) == sorted(hodei.__all__)
    with pytest.raises(AttributeError):
        _ = hodei.sdk_internals  # type: ignore[attr-defined]


def test_from_env_takes_a_str_home_and_repr_masks_the_password(tmp_path: Path) -> None:
    client = Client.from_env(
        home=str(tmp_path / "h"), broker_url="redis://:s3cret-pw@127.0.0.1:6379/0"
    )
    assert client.settings.home == tmp_path / "h"
    text = repr(client)
    assert "s3cret-pw" not in text
    assert "redis://:***@127.0.0.1:6379/0" in text
    assert str(tmp_path / "h" / "hodei.sqlite") in text
    client.close()
    assert "closed" in repr(client)


def test_a_closed_client_refuses_calls_with_a_hodei_error(tmp_path: Path) -> None:
    client = Client.from_env(home=tmp_path / "h")
    client.close()
    for call in (
        lambda: client.submit("true"),
        lambda: client.list(),
        lambda: client.status(),
        lambda: client.providers(),
    ):
        with pytest.raises(ClientClosed) as raised:
            call()
        assert isinstance(raised.value, HodeiError)
        assert raised.value.exit_code == 4
    client.close()  # closing twice is fine
