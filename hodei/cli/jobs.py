"""``hodei job ...``: submit, run, watch and control jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click

from hodei.cli import held, unpublished
from hodei.cli.log_output import LineWriter
from hodei.cli.output import (
    OUTPUT_OPTION,
    output_closed,
    print_fields,
    print_json,
    print_table,
    text_or_json_option,
)
from hodei.cli.params import FiniteFloat, id_range
from hodei.cli.remote import cli_client
from hodei.cli.serialize import event_to_dict, job_to_dict, mapping_from_pairs
from hodei.cli.when import due_time
from hodei.domain.events import DomainEvent
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import Conflict, InvalidInput
from hodei.services.operators.events_feed import summarize as summarize_event

if TYPE_CHECKING:
    from hodei.sdk import AnyClient

# What `job run` exits with when the command did not give an exit code of its own.
EXIT_TIMED_OUT = 124
EXIT_CANCELLED = 130
EXIT_OTHER_FAILURE = 1
# Signals that stop `job run` as Ctrl-C does: the job is cancelled, the exit is 128 + n.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _client(ctx: click.Context) -> AnyClient:
    """A CLI client: over the API when HODEI_API_URL is set, else the database."""
    return cli_client(ctx)


def spec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by ``job run`` and ``job submit``."""
    options = [
        click.option("--name", help="A name for the job (default: the command)."),
        click.option("--env", "-e", multiple=True, metavar="K=V", help="Environment variable."),
        click.option(
            "--secret-env",
            multiple=True,
            metavar="K[=V]",
            help="A secret variable: stored encrypted, masked in the output; K alone takes"
            " its value from your environment (so it is in no command line).",
        ),
        click.option("--workdir", help="Absolute working directory for the command."),
        click.option(
            "--timeout",
            type=FiniteFloat(),
            help="Seconds before the job is TIMED_OUT (1..604800, default 3600).",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 19),
            default=0,
            show_default=True,
            help="Extra attempts after a failure (0..19).",
        ),
        click.option(
            "--backoff",
            type=FiniteFloat(0),
            help="Seconds before the first retry (doubling after each, default 1).",
        ),
        click.option(
            "--label", "-l", multiple=True, metavar="K=V", help="A label the provider must have."
        ),
        click.option("--region", multiple=True, help="A region the job may run in."),
        click.option("--correlation-id", help="Groups the jobs of one workflow."),
        click.option(
            "--idempotency-key", help="Submitting the same key again returns the first job."
        ),
        click.option("--provider", help="Run on this provider only."),
        click.option(
            "--at",
            "at",
            metavar="TIME",
            help="Run at this time, not before: 14:30 (next), 2030-01-02T09:00[+01:00].",
        ),
        click.option(
            "--in", "delay", metavar="DURATION", help="Run after this delay: 90s, 10m, 2h, 1h30m."
        ),
        click.option(
            "--priority",
            type=int,
            help="0..9, default 5: among jobs waiting for a provider, higher starts first.",
        ),
        click.option(
            "--concurrency-key",
            metavar="KEY",
            help="At most --max-concurrency jobs with this key run at once.",
        ),
        click.option(
            "--max-concurrency",
            type=int,
            metavar="N",
            help="Slots of --concurrency-key (default 1).",
        ),
        click.option(
            "--after",
            multiple=True,
            metavar="JOB_ID",
            help="Run once this job has ended (repeatable); cancelled if it did not succeed.",
        ),
        click.option(
            "--after-any",
            is_flag=True,
            help="With --after: run whatever way those jobs ended.",
        ),
        click.argument("command", nargs=-1, required=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def secret_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``--secret-env`` values: ``K=V``, or ``K`` read from this process's environment.
    Errors name the variable, never its value."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            raise InvalidInput("--secret-env needs a name: NAME=VALUE, or NAME alone")
        if not sep:
            if key not in os.environ:
                raise InvalidInput(f"--secret-env {key}: {key} is not set in the environment")
            value = os.environ[key]
        out[key] = value
    return out


def build_spec(params: dict[str, Any]) -> JobSpec:
    """A JobSpec from CLI parameters; one argument is a shell string, several an argv."""
    command = params["command"]
    retries = params["retries"]
    return JobSpec.create(
        command[0] if len(command) == 1 else list(command),
        name=params["name"],
        env=mapping_from_pairs(params["env"], "--env"),
        secret_env=secret_pairs(params["secret_env"]),
        working_dir=params["workdir"],
        timeout_s=params["timeout"],
        max_attempts=retries + 1,
        retry={"backoff_s": params["backoff"]} if params["backoff"] is not None else None,
        labels=mapping_from_pairs(params["label"], "--label"),
        regions=list(params["region"]),
        provider=params["provider"],
        correlation_id=params["correlation_id"],
        idempotency_key=params["idempotency_key"],
        priority=params["priority"],
        run_at=due_time(params["at"], params["delay"], datetime.now(UTC)),
        concurrency_key=params["concurrency_key"],
        max_concurrency=params["max_concurrency"],
        after=list(params["after"]) or None,
        after_any=params["after_any"] or None,
    )


@click.group()
def job() -> None:
    """Submit, watch and control jobs."""


@job.command("run", context_settings={"ignore_unknown_options": False})
@spec_options
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@text_or_json_option()
@click.pass_context
def run(ctx: click.Context, /, no_wait: bool, output: str, **params: Any) -> None:
    """Submit a job, stream its output and exit with its exit code.

    \b
    Put the command after `--`. One argument runs with /bin/sh -c; several run as argv:
      hodei job run -- 'echo $HOME | wc -c'
      hodei job run --retries 2 -- python3 train.py --epochs 3
    """
    client = _client(ctx)
    submitted = _submit(client, build_spec(params))
    if no_wait:
        _print_submitted(submitted, output)
        return
    try:
        with stop_signals_raise():
            if submitted.held:
                submitted = held.wait_for_release(client, submitted)
            if unpublished.is_unpublished(submitted):
                submitted = unpublished.wait_for_publish(client, submitted)
            if output == "json":
                # stdout stays one JSON document (the final job), so the command's
                # output, stored as ever, is not streamed: say so, and how to read it.
                click.echo(
                    f"hodei: job {submitted.id} submitted ({submitted.state}); its output is"
                    f" not shown with --output json: `hodei job logs {submitted.id}` prints it",
                    err=True,
                )
                print_json(job_to_dict(client.wait(submitted.id)))
                sys.exit(exit_code_for(client.get(submitted.id)))
            click.echo(f"hodei: job {submitted.id} submitted ({submitted.state})", err=True)
            writer = LineWriter(live=True)
            for line in client.follow_logs(submitted.id):
                writer.write(line)
    except (KeyboardInterrupt, Stopped) as stop:
        sys.exit(_cancel_on_stop(client, submitted.id, stop))
    except BrokenPipeError:
        if not output_closed():
            raise
        # stdout's reader went away (`| head`): like a lost terminal (SIGHUP), so the
        # job is cancelled; the CLI's boundary then exits 141 (128 + SIGPIPE) quietly.
        _cancel_on_stop(client, submitted.id, Stopped(signal.SIGPIPE))
        raise
    final = client.get(submitted.id)
    click.echo(f"hodei: job {final.id} {final.state}{_why(final)}", err=True)
    sys.exit(exit_code_for(final))


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached ``job run`` (CI cancelled it, ``timeout``, a closed
    terminal): like Ctrl-C's KeyboardInterrupt, so the job is not left unwatched."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` while the body runs."""

    def raise_stopped(signum: int, _frame: object) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, raise_stopped) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cancel_on_stop(client: AnyClient, job_id: UUID, stop: BaseException) -> int:
    """Cancel the job ``job run`` was watching; the exit code for how it was stopped:
    130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP (128 + the signal)."""
    signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
    # A second signal (Ctrl-C pressed twice, a CI runner's repeated SIGTERM) must not cut
    # the cancel short: ignore them while it is written.
    for sig in (signal.SIGINT, *_STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    try:
        cancelled = client.cancel(job_id)
        what = f"cancelled job {job_id}"
        if cancelled.state is not JobState.CANCELLED:
            what = f"cancel requested for job {job_id}"
    except Conflict:
        what = f"job {job_id} had already ended ({client.get(job_id).state})"
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
        click.echo(f"hodei: {signal.Signals(signum).name}: {what}", err=True)
    return 128 + int(signum)


def _explain_wait(client: AnyClient, job: Job) -> None:
    """Once, on stderr: why a job no provider can take now waits (each provider and why
    it was passed over). It is accepted and keeps waiting: a provider may be enabled,
    healed or given the label meanwhile; after HODEI_QUEUE_TIMEOUT it fails."""
    if job.queue is not None or job.is_terminal:
        return
    diagnosis = client.diagnose(job.id)
    providers = next((s.lines for s in diagnosis.steps if s.title.startswith("3.")), [])
    timeout = f"{client.settings.queue_timeout_s:g}s"
    click.echo(
        f"hodei: job {job.id} waits: no provider can take it now "
        f"({'; '.join(providers)}); it runs when one can, or fails after {timeout}. "
        f"To change that: {diagnosis.action}",
        err=True,
    )


def exit_code_for(job: Job) -> int:
    """The command's own exit code (127 when it could not be started), or 124 timed out,
    130 cancelled, 1 other failure."""
    if job.state is JobState.SUCCEEDED:
        return 0
    if job.state is JobState.TIMED_OUT:
        return EXIT_TIMED_OUT
    if job.state is JobState.CANCELLED:
        return EXIT_CANCELLED
    if job.exit_code:
        return job.exit_code
    return EXIT_OTHER_FAILURE


def _why(job: Job) -> str:
    parts = []
    if job.exit_code is not None:
        parts.append(f"exit code {job.exit_code}")
    if job.failure_reason:
        parts.append(job.failure_reason)
    if job.duration_ms is not None:
        parts.append(f"{job.duration_ms / 1000:.2f}s")
    if job.attempt > 1:
        parts.append(f"attempt {job.attempt}")
    return f" ({', '.join(parts)})" if parts else ""


@job.command("submit")
@spec_options
@text_or_json_option()
@click.pass_context
def submit(ctx: click.Context, /, output: str, **params: Any) -> None:
    """Submit a job and print its id.

    If the broker is unreachable, the job is stored PENDING and published when the
    broker is back; a line on stderr says so and the exit code is still 0.
    """
    _print_submitted(_submit(_client(ctx), build_spec(params)), output)


def _submit(client: AnyClient, spec: JobSpec) -> Job:
    """Submit; if the broker did not take the job, say so in one line."""
    with unpublished.publish_failures_reported_by_caller():
        job = client.submit(spec)
    # The job comes back as stored (PENDING); a publish the broker took has since
    # moved it to QUEUED.
    if unpublished.is_unpublished(job):
        job = client.get(job.id)
        if unpublished.is_unpublished(job):
            unpublished.announce(client, job)
    _explain_wait(client, job)
    held.announce(client, job)
    return job


def _print_submitted(job: Job, output: str) -> None:
    if output == "json":
        print_json(job_to_dict(job))
    else:
        click.echo(str(job.id))


@job.command("list")
@click.option("--state", multiple=True, help="Only jobs in this state (repeatable).")
@click.option("--name", help="Only jobs with this name.")
@click.option("--correlation-id", help="Only the jobs of this workflow.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@OUTPUT_OPTION
@click.pass_context
def list_jobs(
    ctx: click.Context,
    state: tuple[str, ...],
    name: str | None,
    correlation_id: str | None,
    limit: int,
    output: str,
) -> None:
    """List jobs, newest first."""
    jobs = _client(ctx).list(
        state=list(state) or None, name=name, correlation_id=correlation_id, limit=limit
    )
    rows = [job_to_dict(j) for j in jobs]
    if output == "json":
        print_json(rows)
        return
    for row, j in zip(rows, jobs, strict=True):
        row["created_at"] = j.created_at
    print_table(
        rows, ["id", "name", "state", "attempt", "exit_code", "failure_reason", "created_at"]
    )


@job.command("show")
@click.argument("job_id")
@OUTPUT_OPTION
@click.pass_context
def show(ctx: click.Context, job_id: str, output: str) -> None:
    """Show one job."""
    data = job_to_dict(_client(ctx).get(job_id))
    print_json(data) if output == "json" else print_fields(data)


@job.command("logs")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Stream new lines until the job ends.")
@click.option("--tail", type=id_range(0), help="Only the last N lines.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    help="At most N lines; a note on stderr says when there were more. Default: all.",
)
@click.option(
    "--stream",
    "stream_filter",
    type=click.Choice(["stdout", "stderr", "system"]),
    multiple=True,
    help="Only these streams.",
)
@click.option("--prefix", is_flag=True, help="Start each line with its stream name.")
@text_or_json_option(
    "json: one object per line on stdout (id, ts, attempt, stream, line, and data_base64"
    " where the exact bytes differ from line)."
)
@click.pass_context
def logs(
    ctx: click.Context,
    job_id: str,
    follow: bool,
    tail: int | None,
    limit: int | None,
    stream_filter: tuple[str, ...],
    prefix: bool,
    output: str,
) -> None:
    """Print a job's output (stdout to stdout, stderr and hodei's notes to stderr), all of
    it, byte for byte as the command wrote it.

    With --follow it replays from the start (or the last --tail N lines), streams new
    lines as they are written and returns when the job has ended.
    """
    client = _client(ctx)
    lines = client.follow_logs(job_id, tail=tail) if follow else client.iter_logs(job_id, tail=tail)
    writer = LineWriter(prefix=prefix, live=follow)
    printed = 0
    for line in lines:
        if stream_filter and line.stream not in stream_filter:
            continue
        if limit is not None and printed == limit:
            writer.flush()
            click.echo(
                f"hodei: output limited to {limit} lines by --limit; there is more", err=True
            )
            break
        printed += 1
        writer.write_json(line) if output == "json" else writer.write(line)
    writer.flush()


@job.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job; a running one gets SIGTERM, then SIGKILL after the grace period."""
    cancelled = _client(ctx).cancel(job_id)
    verb = "cancelled" if cancelled.state is JobState.CANCELLED else "cancel requested for"
    click.echo(f"{verb} job {cancelled.id}")


@job.command("retry")
@click.argument("job_id")
@click.pass_context
def retry(ctx: click.Context, job_id: str) -> None:
    """Run a failed, timed-out or cancelled job again, as a new attempt."""
    client = _client(ctx)
    with unpublished.publish_failures_reported_by_caller():
        retried = client.retry(job_id)
    now = client.get(retried.id)
    if unpublished.is_unpublished(now):
        unpublished.announce(client, now)
        click.echo(f"job {retried.id} will run again as attempt {retried.attempt}")
        return
    # Say the state it is in now: a job no provider can take stays PENDING, and a fast
    # one may already have run.
    _explain_wait(client, now)
    if now.state is JobState.QUEUED:
        click.echo(f"job {now.id} queued again as attempt {now.attempt}")
    elif now.state is JobState.PENDING:
        click.echo(f"job {now.id} is PENDING as attempt {now.attempt}: no provider can take it now")
    else:
        click.echo(f"job {now.id} is {now.state} as attempt {now.attempt}{_why(now)}")


@job.command("release")
@click.argument("job_id")
@click.pass_context
def release(ctx: click.Context, job_id: str) -> None:
    """Run a held job now, whatever it waits for: its due time (--at/--in), the jobs it
    runs after (--after), a slot of its concurrency key."""
    client = _client(ctx)
    released = client.release(job_id)
    click.echo(f"job {released.id} released")


@job.command("timeline")
@click.argument("job_id", required=False)
@click.option("--correlation-id", help="The whole workflow with this correlation id.")
@click.option(
    "--only-job", is_flag=True, help="Only the job's own events, not its workers' and tokens'."
)
@OUTPUT_OPTION
@click.pass_context
def timeline(
    ctx: click.Context,
    job_id: str | None,
    correlation_id: str | None,
    only_job: bool,
    output: str,
) -> None:
    """A job's events in order: what happened, when, and who did it.

    \b
    With the job's own events come those of the workers that ran its attempts (their
    infrastructure events included) and of their bootstrap tokens.
      hodei job timeline 2cf98dd9-d8cd-4b22-870b-d9b17fe4a5ea
      hodei job timeline --correlation-id workflow-2025-12-22
    """
    if job_id is None and correlation_id is None:
        raise click.UsageError("give a JOB_ID or --correlation-id")
    events = _client(ctx).timeline(job_id, correlation_id=correlation_id, related=not only_job)
    if output == "json":
        print_json([event_to_dict(e) for e in events])
        return
    print_table(
        [timeline_row(e) for e in events],
        ["time", "event", "entity", "actor", "correlation_id", "summary"],
    )


def timeline_row(event: DomainEvent) -> dict[str, Any]:
    """One table row of a timeline or event list."""
    return {
        "id": event.id,
        "time": event.occurred_at,
        "event": event.event_type,
        "entity": f"{event.aggregate_type}:{str(event.aggregate_id)[:8]}",
        "actor": _short_actor(event.actor),
        "correlation_id": event.correlation_id,
        "summary": summarize(event.payload, event.event_type),
    }


def _short_actor(actor: str) -> str:
    # worker:<uuid> -> worker:<first 8>, as entity ids are shown; JSON keeps it whole.
    kind, sep, ident = actor.partition(":")
    return f"{kind}:{ident[:8]}" if sep and kind == "worker" and len(ident) == 36 else actor


def summarize(payload: dict[str, Any], event_type: str | None = None) -> str:
    """A one-line summary of an event payload (shared with diagnose and events)."""
    return summarize_event(event_type, payload)


@job.command("diagnose")
@click.argument("job_id")
@OUTPUT_OPTION
@click.pass_context
def diagnose(ctx: click.Context, job_id: str, output: str) -> None:
    """Why a job is where it is, and what to do about it.

    \b
    Runs five steps (docs/troubleshooting.md): state and attempts, whether and where
    it is queued, which providers match, the workers on its queue and their heartbeats,
    its last events; then prints a verdict and a suggested action.
    """
    result = _client(ctx).diagnose(job_id)
    if output == "json":
        print_json(result.to_dict())
        return
    click.echo(f"job {result.job_id}: {result.state}")
    for step in result.steps:
        click.echo(f"\n{step.title}")
        for line in step.lines:
            click.echo(f"  {line}")
    click.echo(f"\nverdict: {result.verdict}")
    click.echo(f"action:  {result.action}")
