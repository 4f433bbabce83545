"""Help reads as help: a group run without a subcommand prints it as ``--help`` does
(not squeezed into one error line), and no option's help shows click's range artefacts
(``[x<=None]``, the 19-digit 64-bit limit)."""

from __future__ import annotations

import re

import click
import pytest

from hodei.cli.main import cli
from hodei.settings import Settings
from tests.support import run_cli


@pytest.mark.parametrize("group", [[], ["job"], ["auth", "token"]])
def test_a_group_without_a_subcommand_prints_its_help_and_exits_0(
    embedded_settings: Settings, group: list[str]
) -> None:
    bare = run_cli(embedded_settings, *group)
    assert bare.returncode == 0, bare.stderr
    assert bare.stderr == ""
    assert bare.stdout == run_cli(embedded_settings, *group, "--help").stdout
    lines = bare.stdout.splitlines()
    assert lines[0].startswith(f"Usage: {' '.join(['hodei', *group])} [OPTIONS] COMMAND")
    assert len(lines) > 5 and max(len(line) for line in lines) < 200


# A bracket of click's help extras naming None or the 64-bit limit.
_ARTEFACT = re.compile(r"\[[^\]]*(None|9223372036854775807)[^\]]*\]")


@pytest.mark.parametrize("command", [["job", "run"], ["job", "submit"], ["schedule", "add"]])
def test_timeout_help_has_no_range_artefact(
    embedded_settings: Settings, command: list[str]
) -> None:
    result = run_cli(embedded_settings, *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--timeout" in result.stdout
    assert not _ARTEFACT.search(result.stdout), result.stdout


def test_no_option_help_anywhere_has_a_range_artefact() -> None:
    """Every command's every option, as `--help` would print it."""
    found: list[str] = []

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=path[-1], parent=parent)
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record and _ARTEFACT.search(record[1]):
                found.append(f"{' '.join(path)} {record[0]}: {record[1]}")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name], ctx)

    walk(cli, ["hodei"], None)
    assert found == []
