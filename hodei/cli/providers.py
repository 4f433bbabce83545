"""``hodei provider ...``: register, inspect, change and health-check providers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hodei.cli.output import OUTPUT_OPTION, print_fields, print_json, print_table
from hodei.cli.params import FiniteFloat
from hodei.cli.remote import cli_client
from hodei.cli.serialize import mapping_from_pairs, provider_to_dict
from hodei.domain.states import ProviderHealth
from hodei.errors import InvalidConfiguration, ProviderUnavailable
from hodei.services.fleet.provider_registry import ProviderView

if TYPE_CHECKING:
    from hodei.sdk import AnyClient

_COLUMNS = [
    "name",
    "type",
    "status",
    "health",
    "priority",
    "live_workers",
    "max_workers",
    "labels",
    "preferred_region",
    "health_message",
]


def _client(ctx: click.Context) -> AnyClient:
    """A CLI client: over the API when HODEI_API_URL is set, else the database."""
    return cli_client(ctx)


def _config(config: str | None, config_file: Path | None) -> dict[str, Any] | None:
    from hodei.providers.config import parse_config_text

    if config is not None and config_file is not None:
        raise InvalidConfiguration("give --config or --config-file, not both")
    if config_file is not None:
        try:
            text = config_file.read_text()
        except OSError as exc:
            raise InvalidConfiguration(f"cannot read {config_file}: {exc.strerror}") from None
        return parse_config_text(text, str(config_file))
    return parse_config_text(config) if config is not None else None


def _show(view: ProviderView, output: str) -> None:
    data = provider_to_dict(view)
    print_json(data) if output == "json" else print_fields(data)


def _settings_options(fn: Any) -> Any:
    options = [
        click.option("--config", "config", help="Type-specific settings as a JSON object."),
        click.option(
            "--config-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Read the JSON config from a file.",
        ),
        click.option(
            "--priority",
            type=click.IntRange(-1000, 1000),
            help="Higher wins when several providers match.",
        ),
        click.option(
            "--max-workers", type=click.IntRange(0, 10_000), help="Most workers alive at once."
        ),
        click.option("--min-workers", type=click.IntRange(0, 10_000), help="Workers kept warm."),
        click.option(
            "--label",
            "labels",
            multiple=True,
            metavar="K=V",
            help="A label jobs can require (repeatable).",
        ),
        click.option("--region", help="The preferred region."),
        click.option(
            "--allowed-region",
            "allowed_regions",
            multiple=True,
            help="A region jobs may ask for (repeatable; none means any).",
        ),
        click.option(
            "--health-interval",
            type=FiniteFloat(0, min_open=True),
            help="Seconds between health checks.",
        ),
        click.option(
            "--health-timeout",
            type=FiniteFloat(0, min_open=True),
            help="Seconds a health check may take.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _fields(**given: Any) -> dict[str, Any]:
    """Only what was given on the command line, in ProviderSpec's terms."""
    out: dict[str, Any] = {}
    config = _config(given["config"], given["config_file"])
    if config is not None:
        out["config"] = config
    for key in ("priority", "max_workers", "min_workers"):
        if given[key] is not None:
            out[key] = given[key]
    if given["labels"]:
        out["labels"] = mapping_from_pairs(given["labels"], "--label")
    if given["region"] is not None:
        out["preferred_region"] = given["region"]
    if given["allowed_regions"]:
        out["allowed_regions"] = tuple(given["allowed_regions"])
    health = {
        k: given[f"health_{k[:-2]}"]
        for k in ("interval_s", "timeout_s")
        if given[f"health_{k[:-2]}"] is not None
    }
    if health:
        out["health_check"] = health
    return out


@click.group()
def provider() -> None:
    """Register and manage the providers that launch workers."""


@provider.command("add")
@click.argument("name")
@click.option(
    "--type", "provider_type", required=True, type=click.Choice(["local", "docker", "kubernetes"])
)
@_settings_options
@OUTPUT_OPTION
@click.pass_context
def add(ctx: click.Context, /, name: str, provider_type: str, output: str, **given: Any) -> None:
    """Register a provider (its config is validated for its type)."""
    client = _client(ctx)
    client.add_provider(name, provider_type, **_fields(**given))
    _show(client.provider(name), output)


@provider.command("update")
@click.argument("name")
@_settings_options
@OUTPUT_OPTION
@click.pass_context
def update(ctx: click.Context, /, name: str, output: str, **given: Any) -> None:
    """Change some settings (--config replaces the whole config)."""
    changes = _fields(**given)
    if not changes:
        raise InvalidConfiguration("nothing to update: give at least one option")
    client = _client(ctx)
    client.update_provider(name, **changes)
    _show(client.provider(name), output)


@provider.command("list")
@OUTPUT_OPTION
@click.pass_context
def list_providers(ctx: click.Context, output: str) -> None:
    """Every provider with its status, health and live workers."""
    rows = [provider_to_dict(v) for v in _client(ctx).providers()]
    print_json(rows) if output == "json" else print_table(rows, _COLUMNS)


@provider.command("show")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_context
def show(ctx: click.Context, name: str, output: str) -> None:
    """One provider in full, including its last health check."""
    _show(_client(ctx).provider(name), output)


def _status_command(command: str, method: str, doc: str) -> None:
    @provider.command(command, help=doc)
    @click.argument("name")
    @OUTPUT_OPTION
    @click.pass_context
    def change(ctx: click.Context, name: str, output: str) -> None:
        client = _client(ctx)
        getattr(client, method)(name)
        view = client.provider(name)
        if output == "json":
            print_json(provider_to_dict(view))
        else:
            click.echo(f"provider {name} is {view.provider.status}")


_status_command("enable", "enable_provider", "Accept new jobs and launch workers again.")
_status_command("disable", "disable_provider", "No new jobs, no new workers.")
_status_command(
    "drain", "drain_provider", "No new jobs or workers; queued jobs finish on the workers it has."
)


@provider.command("remove")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help=(
        "Also when it has live workers, unfinished jobs or schedules naming it:"
        " end the workers, fail the jobs (the schedules' fires fail until removed)."
    ),
)
@click.pass_context
def remove(ctx: click.Context, name: str, force: bool) -> None:
    """Delete a provider (refused while it has live workers, unfinished jobs or schedules)."""
    removal = _client(ctx).remove_provider(name, force=force)
    ended = f", {len(removal.ended_workers)} worker(s) ended" if removal.ended_workers else ""
    failed = f", {len(removal.failed_jobs)} job(s) failed" if removal.failed_jobs else ""
    click.echo(f"provider {name} removed{ended}{failed}")


@provider.command("health")
@click.argument("name", required=False)
@OUTPUT_OPTION
@click.pass_context
def health(ctx: click.Context, name: str | None, output: str) -> None:
    """Check now (one provider, or all) and print the result.

    Exits 5 (ServiceUnavailable) when a provider checked is UNHEALTHY, so scripts can
    rely on the exit code; DEGRADED and HEALTHY exit 0.
    """
    results = _client(ctx).check_provider_health(name)
    rows = [{"name": n, "health": str(r.health), "message": r.message} for n, r in results.items()]
    print_json(rows) if output == "json" else print_table(rows, ["name", "health", "message"])
    unhealthy = [n for n, r in results.items() if r.health is ProviderHealth.UNHEALTHY]
    if unhealthy:
        raise ProviderUnavailable(f"provider {', '.join(unhealthy)} is UNHEALTHY")
