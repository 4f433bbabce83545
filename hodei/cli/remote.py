"""The client the CLI's commands use: over the API when ``HODEI_API_URL`` is set
(with ``HODEI_API_TOKEN``), else straight to the database the settings name."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from hodei.sdk import AnyClient
    from hodei.settings import Settings


def cli_client(ctx: click.Context) -> AnyClient:
    # Each mode imports only its own client: over the API, none of the direct mode's
    # wiring (tests/integration/test_cli_imports.py).
    if os.environ.get("HODEI_API_URL"):
        from hodei.sdk_http import HttpClient

        return HttpClient.from_env()
    from hodei.bootstrap import Container
    from hodei.sdk import Client

    settings: Settings = ctx.find_root().obj
    return Client(Container(settings), interface="cli")
