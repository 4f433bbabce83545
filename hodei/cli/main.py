"""The ``hodei`` entry point and its one error boundary."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import click

from hodei import __version__, errors
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
    return "\b\nExit codes:\n" + "\n".join(lines)


EXIT_CODES_HELP = _exit_codes_help()


class HodeiGroup(click.Group):
    """A group whose ``main`` is the CLI's single error boundary."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            args = _checked_args(sys.argv[1:] if args is None else list(args))
            return super().main(args, *rest, **kwargs)
        except errors.HodeiError as exc:
            _report(exc)
            sys.exit(exc.exit_code)
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


def _register() -> None:
    from hodei.cli import db, jobs, maintenance, workers

    cli.add_command(jobs.job)
    cli.add_command(workers.worker)
    cli.add_command(db.db)
    cli.add_command(maintenance.maintenance)
    cli.add_command(maintenance.scheduler)

    from hodei.cli import providers as providers_cli

    cli.add_command(providers_cli.provider)

    from hodei.cli import flower as flower_cli
    from hodei.cli import serve as serve_cli

    cli.add_command(serve_cli.serve)

    from hodei.cli import server as server_cli

    cli.add_command(server_cli.server)
    cli.add_command(server_cli.auth)
    cli.add_command(flower_cli.flower)

    from hodei.cli import events as events_cli
    from hodei.cli import ops as ops_cli

    cli.add_command(events_cli.events)

    from hodei.cli import schedules as schedules_cli

    cli.add_command(schedules_cli.schedule)
    cli.add_command(ops_cli.status)
    cli.add_command(ops_cli.doctor)


_register()


def main() -> None:
    cli(prog_name="hodei")
