"""Every HodeiError crosses the API as a problem document and comes back as the same
class with the same exit code and message (the CLI over HTTP exits as it does locally)."""

from __future__ import annotations

import pytest

from hodei import errors
from hodei.api.problems import PROBLEM_TYPE, hodei_problem
from hodei.sdk_http import raise_problem


def _every_error() -> list[type[errors.HodeiError]]:
    found: list[type[errors.HodeiError]] = [errors.HodeiError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _every_error(), ids=lambda c: c.__name__)
def test_an_error_comes_back_as_its_own_class(cls: type[errors.HodeiError]) -> None:
    # Built as raise_problem builds it: some subclasses (ProvisionFailed) take other
    # arguments, and which of them exist here depends on what earlier tests imported.
    sent = cls.__new__(cls)
    errors.HodeiError.__init__(sent, "unknown token")
    response = hodei_problem(sent)
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert response.status_code != 500
    with pytest.raises(errors.HodeiError) as raised:
        raise_problem(response.status_code, bytes(response.body))
    assert type(raised.value) is cls
    assert raised.value.exit_code == cls.exit_code
    assert sent.message in str(raised.value)


def test_a_body_that_is_not_a_problem_is_a_plain_hodei_error() -> None:
    with pytest.raises(errors.HodeiError) as raised:
        raise_problem(502, b"<html>bad gateway</html>")
    assert type(raised.value) is errors.HodeiError
    assert "502" in str(raised.value)


def test_access_errors_have_their_documented_exit_codes() -> None:
    assert (errors.Unauthorized.exit_code, errors.Forbidden.exit_code) == (9, 10)
    assert hodei_problem(errors.Unauthorized()).status_code == 401
    assert hodei_problem(errors.Forbidden()).status_code == 403


def test_the_http_client_implements_every_public_method_of_the_client() -> None:
    """A method added to Client must be added to HttpClient too (or be one that only
    composes others), or it would reach for a database the remote client has not."""
    from hodei.sdk import Client
    from hodei.sdk_http import HttpClient

    composed = {"submit", "logs", "closed", "container", "settings", "actor"}
    public = {n for n in vars(Client) if not n.startswith("_")} - composed
    missing = sorted(n for n in public if vars(HttpClient).get(n) is None)
    assert missing == []


def test_both_backends_implement_what_their_shared_base_leaves_open() -> None:
    """ClientBase composes calls (submit, logs, events) from hooks each backend has."""
    import inspect

    from hodei.sdk import Client
    from hodei.sdk_base import ClientBase
    from hodei.sdk_http import HttpClient

    hooks = {
        name
        for name, member in vars(ClientBase).items()
        if inspect.isfunction(member) and "raise NotImplementedError" in inspect.getsource(member)
    }
    assert {"submit_many", "iter_logs", "_events", "close"} <= hooks
    for backend in (Client, HttpClient):
        missing = sorted(n for n in hooks if vars(backend).get(n) is None)
        assert missing == [], backend.__name__
