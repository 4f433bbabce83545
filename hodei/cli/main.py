"""The ``hodei`` entry point and its one error boundary."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from hodei import __version__, errors
from hodei.cli.output import (
    CLOSED_OUTPUT_EXIT_CODE,
    OutputClosed,
    output_closed,
    silence_closed_output,
)
from hodei.domain.inputs import text_problem
from hodei.logconfig import configure_logging
from hodei.settings import Settings

logger = logging.getLogger("hodei.cli")


INTERNAL_ERROR_EXIT_CODE = 70  # EX_SOFTWARE in sysexits.h

USAGE_ERROR_EXIT_CODE = 2  # click's own, the same as InvalidInput's


def _exit_codes_help() -> str:
    lines = [
        f"  {c.exit_code}  {c.__name__}: {(c.__doc__ or '').strip()}" for c in errors.EXIT_CODES
    ]
    usage = (
        f"  {USAGE_ERROR_EXIT_CODE}  usage error: an unknown command or option, a bad option value"
    )
    lines.insert(errors.EXIT_CODES.index(errors.InvalidInput) + 1, usage)
    lines.append(
        f"  {INTERNAL_ERROR_EXIT_CODE}  internal error: a bug in hodei or a broken installation"
    )
    lines.append(f"  {CLOSED_OUTPUT_EXIT_CODE}  output closed (`| head`): stopped quietly")
    return "\b\nExit codes:\n" + "\n".join(lines)


EXIT_CODES_HELP = _exit_codes_help()


class HodeiGroup(click.Group):
    """A group whose ``main`` is the CLI's single error boundary, and whose commands
    (:data:`COMMANDS`) are imported only when one of them runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands' list from :data:`COMMANDS`, as click would write it from the
        commands themselves, without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, _short_help(self, name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _closed_output_raised():  # `hodei --help | head -1`
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _closed_output_raised():
            return super().invoke(ctx)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            args = _checked_args(sys.argv[1:] if args is None else list(args))
            return super().main(args, *rest, **kwargs)
        except errors.HodeiError as exc:
            _report(exc)
            sys.exit(exc.exit_code)
        except OutputClosed:
            # The reader went away (`hodei job list | head -1`): stop quietly, as a Unix
            # tool killed by SIGPIPE does, with its exit code.
            silence_closed_output()
            sys.exit(CLOSED_OUTPUT_EXIT_CODE)
        except click.exceptions.NoArgsIsHelpError as exc:
            # A group run without a subcommand: its help, as `--help` prints it (and as
            # docker and kubectl do), not squeezed into one error line. Exit 0: nothing
            # went wrong, the user asked what there is.
            click.echo(exc.ctx.get_help(), color=exc.ctx.color)
            sys.exit(0)
        except click.exceptions.Abort:
            click.echo("hodei: aborted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            # click prints Usage / Try / Error on three lines; hodei's errors are one.
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"hodei: error: {_one_line(exc.format_message())}{where}", err=True)
            sys.exit(USAGE_ERROR_EXIT_CODE)
        except click.ClickException as exc:
            click.echo(f"hodei: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("hodei: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            # A bug in hodei or a broken installation (a missing module): still one line.
            click.echo(
                f"hodei: internal error: {type(exc).__name__}: {exc} (-v prints the traceback)",
                err=True,
            )
            logger.debug("traceback", exc_info=exc)
            sys.exit(INTERNAL_ERROR_EXIT_CODE)


@contextlib.contextmanager
def _closed_output_raised() -> Iterator[None]:
    """A BrokenPipeError as :class:`OutputClosed` when stdout or stderr lost its reader
    (click would exit 1 without a word); from anything else, an internal error."""
    try:
        yield
    except BrokenPipeError as exc:
        if output_closed():
            raise OutputClosed from exc
        raise RuntimeError(f"broken pipe: {exc}") from exc


def _checked_args(args: list[str]) -> list[str]:
    """The arguments, or InvalidInput naming the first that is not text hodei can keep:
    bytes that are not UTF-8 (Python hands them over as lone surrogates) or a NUL."""
    for position, arg in enumerate(args, start=1):
        if text_problem(arg) is not None:
            what = "contains a NUL byte" if "\x00" in arg else "is not valid UTF-8"
            raise errors.InvalidInput(f"argument {position} {what}: {_as_bytes(arg)!r}")
    return args


def _as_bytes(arg: str) -> bytes:
    """The bytes the argument came from (a lone surrogate Python did not make from a
    byte, only possible in-process, as its escape)."""
    try:
        return arg.encode("utf-8", "surrogateescape")[:40]
    except UnicodeEncodeError:
        return arg.encode("utf-8", "backslashreplace")[:40]


def _one_line(message: str) -> str:
    return " ".join(message.split())


# What drivers put before their message: SQLAlchemy's "(psycopg.OperationalError) ",
# OSError's "[Errno 98] ".
_CAUSE_PREFIX = re.compile(r"^(\([\w.]+\)|\[Errno \d+\])\s*")


def _report(exc: BaseException) -> None:
    """One line for the error, one for its cause when that says more; the traceback
    only with -v."""
    click.echo(f"hodei: error: {exc}", err=True)
    cause = exc.__cause__
    first = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    if cause is not None and first and _CAUSE_PREFIX.sub("", first) not in str(exc):
        click.echo(f"  caused by: {type(cause).__name__}: {first}", err=True)
    logger.debug("traceback", exc_info=exc)


@click.group(
    cls=HodeiGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logs and tracebacks on errors.")
@click.version_option(__version__, prog_name="hodei")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """hodei: run shell-command jobs on ephemeral Celery workers, with an audit timeline."""
    settings = Settings.from_env(log_level="DEBUG") if verbose else Settings.from_env()
    if verbose:
        configure_logging(settings.log_level, settings.log_format)
    else:
        # A one-shot command's records read like its own lines (`hodei: warning: ...`);
        # workers and servers configure their own logging with timestamps when they start.
        text = settings.log_format == "text"
        configure_logging(_cli_level(settings), "cli" if text else settings.log_format)
    ctx.obj = settings


def _cli_level(settings: Settings) -> str:
    # Interactive commands stay quiet unless asked; workers and servers log at the level set.
    return "WARNING" if settings.log_level == "INFO" else settings.log_level


# name: (module, attribute, short help). A command's module is imported only when that
# command runs: `hodei job run` need not import the servers', operators' and workers'
# commands and what they import, and `hodei --help` lists them from here, importing none
# (tests/integration/test_cli_imports.py checks that these lines match the commands' own).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "auth": ("hodei.cli.server", "auth", "API tokens for `hodei server` callers."),
    "db": ("hodei.cli.db", "db", "Database schema migrations."),
    "doctor": (
        "hodei.cli.ops",
        "doctor",
        "Check the whole system; exit 1 when anything is found.",
    ),
    "events": (
        "hodei.cli.events",
        "events",
        "The audit log: every state change, who caused it and when.",
    ),
    "flower": (
        "hodei.cli.flower",
        "flower",
        "Run Flower on hodei's broker: live workers and tasks.",
    ),
    "job": ("hodei.cli.jobs", "job", "Submit, watch and control jobs."),
    "maintenance": (
        "hodei.cli.maintenance",
        "maintenance",
        "Run the periodic upkeep tasks by hand.",
    ),
    "provider": (
        "hodei.cli.providers",
        "provider",
        "Register and manage the providers that launch workers.",
    ),
    "schedule": (
        "hodei.cli.schedules",
        "schedule",
        'Cron schedules: each tick submits a job (see docs/manual.md, "Cron schedules").',
    ),
    "scheduler": (
        "hodei.cli.maintenance",
        "scheduler",
        "Run beat, the cron schedules and a worker on hodei.control in one process.",
    ),
    "serve": (
        "hodei.cli.serve",
        "serve",
        "Serve /metrics, /health, /health/ready and /health/live until stopped.",
    ),
    "server": (
        "hodei.cli.server",
        "server",
        "Serve the HTTP API (/v1/..., OpenAPI at /docs and /openapi.json), /metrics and"
        " /health, /health/ready, /health/live until stopped.",
    ),
    "status": (
        "hodei.cli.ops",
        "status",
        "Where the data is, jobs and workers by state, queues, providers and capacity,"
        " tokens outstanding.",
    ),
    "worker": (
        "hodei.cli.workers",
        "worker",
        "Start, list and drain workers; issue bootstrap tokens.",
    ),
}


def _short_help(group: click.Group, name: str, limit: int) -> str:
    if name in group.commands:  # added by hand (tests), or already imported
        return group.commands[name].get_short_help_str(limit)
    # A stand-in with the command's help text shortens it exactly as click would.
    return click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)


def load_command(name: str) -> click.Command:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    import importlib

    module, attribute, _help = COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


def main() -> None:
    cli(prog_name="hodei")
