"""`hodei auth token list` shows who created each token, as docs/manual.md says, and the
one-line summaries of token events name the token and its role."""

from __future__ import annotations

import getpass

from hodei.settings import Settings
from tests.support import run_cli


def _create(settings: Settings) -> None:
    created = run_cli(settings, "auth", "token", "create", "ci-bot", "--role", "viewer")
    assert created.returncode == 0, created.stderr


def test_token_list_shows_the_creator(embedded_settings: Settings) -> None:
    _create(embedded_settings)
    listed = run_cli(embedded_settings, "auth", "token", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ROLE", "CREATED_BY"]
    assert row.split()[:3] == ["ci-bot", "viewer", f"cli:{getpass.getuser()}"]


def test_token_event_summaries_name_the_token_and_role(embedded_settings: Settings) -> None:
    _create(embedded_settings)
    revoked = run_cli(embedded_settings, "auth", "token", "revoke", "ci-bot")
    assert revoked.returncode == 0, revoked.stderr
    for event_type in ("ApiTokenCreated", "ApiTokenRevoked"):
        events = run_cli(embedded_settings, "events", "list", "--type", event_type)
        assert events.returncode == 0, events.stderr
        (line,) = events.stdout.splitlines()[1:]
        assert line.endswith("name=ci-bot role=viewer"), line
