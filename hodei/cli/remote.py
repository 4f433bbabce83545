"""The client the CLI's commands use: over the API when ``HODEI_API_URL`` is set
(with ``HODEI_API_TOKEN``), else straight to the database the settings name."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from hodei.sdk import Client
from hodei.settings import Settings

if TYPE_CHECKING:
    from hodei.sdk import AnyClient


def cli_client(ctx: click.Context) -> AnyClient:
    if os.environ.get("HODEI_API_URL"):
        from hodei.sdk_http import HttpClient

        return HttpClient.from_env()
    from hodei.bootstrap import Container

    settings: Settings = ctx.find_root().obj
    return Client(Container(settings), interface="cli")
