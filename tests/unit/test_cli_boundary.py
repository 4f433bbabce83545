"""The CLI's error boundary: even an unexpected exception ends in one line and a
documented exit code, with the traceback only under -v."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from hodei.cli.main import INTERNAL_ERROR_EXIT_CODE, cli


@pytest.fixture
def broken_command() -> Iterator[None]:
    @click.command("boom")
    def boom() -> None:
        raise ModuleNotFoundError("No module named 'packaging'")

    cli.add_command(boom)
    yield
    cli.commands.pop("boom")


@pytest.mark.usefixtures("broken_command")
def test_an_unexpected_error_is_one_line_and_exit_70(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["boom"], prog_name="hodei")
    assert exited.value.code == INTERNAL_ERROR_EXIT_CODE == 70
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "hodei: internal error: ModuleNotFoundError: No module named 'packaging'"
        " (-v prints the traceback)"
    ]
