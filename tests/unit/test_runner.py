"""Tests for hodei.runtime.runner, with real processes."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from pathlib import Path

import pytest

from hodei.runtime import proctree
from hodei.runtime.hardening import JobUser
from hodei.runtime.runner import (
    MAX_LINE_BYTES,
    CommandRunner,
    OutputLine,
    build_job_env,
)
from hodei.services.jobs.attempts import Outcome
from tests.services import unavailable
from tests.support import escaping_command, kill_survivors, survivors

ENV = build_job_env({}, {})
FAST = CommandRunner(flush_interval_s=0.05, grace_s=1.0, cancel_check_interval_s=0.05)


class Collector:
    """An on_output callback that keeps every batch and the threads it was called on."""

    def __init__(self) -> None:
        self.batches: list[list[OutputLine]] = []
        self.threads: set[int] = set()

    def __call__(self, batch: list[OutputLine]) -> None:
        self.batches.append(list(batch))
        self.threads.add(threading.get_ident())

    @property
    def lines(self) -> list[OutputLine]:
        return [line for batch in self.batches for line in batch]

    def texts(self, stream: str) -> list[str]:
        return [line.line for line in self.lines if line.stream == stream]


def run(
    command: str | Sequence[str],
    *,
    runner: CommandRunner = FAST,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float = 10.0,
    should_cancel: Callable[[], bool] = lambda: False,
) -> tuple[Outcome, Collector]:
    collector = Collector()
    outcome = runner.run(
        command,
        env=ENV if env is None else env,
        cwd=cwd,
        timeout_s=timeout_s,
        on_output=collector,
        should_cancel=should_cancel,
    )
    assert collector.threads <= {threading.get_ident()}
    assert all(collector.batches), "on_output was called with an empty batch"
    return outcome, collector


def wait_until_gone(check: Callable[[], None], within_s: float = 2.0) -> None:
    """Poll ``check`` until it raises ProcessLookupError; fail if it never does."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            check()
        except ProcessLookupError:
            return
        time.sleep(0.01)
    pytest.fail("process (group) still exists")


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make this process a child subreaper, as a worker that is PID 1 of its container is.

    Without it the job's orphans go to init; an init that never reaps (some sandboxes) keeps
    them as zombies, and a zombie still counts as a member of its process group.
    """
    if not sys.platform.startswith("linux"):
        unavailable("PR_SET_CHILD_SUBREAPER is Linux only")
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def test_stdout_and_stderr_are_captured_per_stream_in_order() -> None:
    outcome, out = run("echo one; echo two >&2; echo three; echo four >&2")
    assert out.texts("stdout") == ["one", "three"]
    assert out.texts("stderr") == ["two", "four"]
    assert outcome == Outcome(
        exit_code=0,
        signal=None,
        timed_out=False,
        cancelled=False,
        duration_ms=outcome.duration_ms,
    )
    assert all(line.ts.tzinfo is UTC for line in out.lines)


def test_exit_code_is_kept() -> None:
    outcome, _ = run("exit 3")
    assert (outcome.exit_code, outcome.signal, outcome.error) == (3, None, None)


def test_argv_form_is_not_split_by_a_shell() -> None:
    outcome, out = run(["printf", "%s\\n", "a b", "$HOME"])
    assert outcome.exit_code == 0
    assert out.texts("stdout") == ["a b", "$HOME"]


def test_build_job_env_copies_only_the_allow_list() -> None:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/home/w", "DATABASE_URL": "postgres://secret"}
    env = build_job_env({"JOB_VAR": "job", "HOME": "/job"}, {"HODEI_JOB_ID": "42"}, base)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/job",
        "JOB_VAR": "job",
        "HODEI_JOB_ID": "42",
    }
    assert build_job_env({"X": "job"}, {"X": "extra"}, {})["X"] == "extra"


def test_a_job_of_another_user_inherits_only_the_path_it_can_search(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    private.chmod(0o700)
    (tmp_path / "open").mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    searchable = [str(tmp_path / "open")] if _searchable_by_others(tmp_path) else []
    worker_path = os.pathsep.join([str(private / "bin"), str(tmp_path / "open"), "/bin", "rel"])
    user = JobUser("nobody", 65534, 65534, "/")
    env = build_job_env({}, {}, {"PATH": worker_path}, user=user)
    assert env["PATH"] == os.pathsep.join([*searchable, "/bin"])
    assert build_job_env({}, {}, {"PATH": worker_path})["PATH"] == worker_path  # own user
    own = build_job_env({"PATH": worker_path}, {}, {"PATH": "/bin"}, user=user)
    assert own["PATH"] == worker_path  # the job's own PATH is its business


def _searchable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a command as nobody")
def test_a_missing_command_behind_an_unsearchable_path_entry_is_not_found(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    tool = private / "bin" / "hodei-private-tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    private.chmod(0o700)
    nobody = CommandRunner(
        flush_interval_s=0.05, grace_s=1.0, user=JobUser("nobody", 65534, 65534, "/")
    )
    env = {"PATH": f"{private / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"}  # the job's own
    missing, _ = run(["hodei-no-such-command-xyz"], env=env, runner=nobody)
    assert (missing.exit_code, missing.error) == (
        127,
        "command not found: hodei-no-such-command-xyz",
    )
    refused, _ = run(["hodei-private-tool"], env=env, runner=nobody)  # there, but not for it
    assert (refused.exit_code, refused.error) == (127, "permission denied: hodei-private-tool")


def test_env_reaches_the_command_and_worker_secrets_do_not() -> None:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECRET_TOKEN": "s3cr3t"}
    env = build_job_env({"JOB_VAR": "hello"}, {"HODEI_JOB_ID": "42"}, base)
    outcome, out = run('echo "$JOB_VAR|$HODEI_JOB_ID|${SECRET_TOKEN-unset}"', env=env)
    assert outcome.exit_code == 0
    assert out.texts("stdout") == ["hello|42|unset"]


def test_cwd(tmp_path: Path) -> None:
    outcome, out = run("pwd -P", cwd=str(tmp_path))
    assert outcome.exit_code == 0
    assert out.texts("stdout") == [os.path.realpath(tmp_path)]


def test_missing_command_is_an_outcome_not_an_exception() -> None:
    outcome, out = run(["hodei-no-such-command-xyz", "arg"])
    assert outcome.exit_code == 127
    assert outcome.error == "command not found: hodei-no-such-command-xyz"
    assert [(line.stream, line.line) for line in out.lines] == [
        ("system", "hodei: command not found: hodei-no-such-command-xyz")
    ]


def test_missing_cwd_is_an_outcome_not_an_exception(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    outcome, out = run("true", cwd=missing)
    assert outcome.exit_code == 127
    assert outcome.error == f"working directory does not exist: {missing}"
    assert out.texts("system") == [f"hodei: working directory does not exist: {missing}"]


def test_timeout_sends_sigterm_to_the_whole_group(subreaper: None) -> None:
    started = time.monotonic()
    outcome, out = run("echo $$; sleep 30", timeout_s=1)
    assert time.monotonic() - started < 2.5
    assert outcome.timed_out and not outcome.cancelled
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGTERM)
    assert out.texts("system") == ["hodei: timeout after 1s, sent SIGTERM to the process group"]
    pgid = int(out.texts("stdout")[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_sigterm_is_ignored_so_sigkill_follows_the_grace(subreaper: None) -> None:
    runner = CommandRunner(flush_interval_s=0.05, grace_s=0.5)
    started = time.monotonic()
    outcome, out = run("trap '' TERM; echo $$; sleep 30", runner=runner, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert outcome.timed_out
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGKILL)
    assert out.texts("system") == [
        "hodei: timeout after 0.5s, sent SIGTERM to the process group",
        "hodei: still running 0.5s after SIGTERM, sent SIGKILL to the process group",
    ]
    pgid = int(out.texts("stdout")[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_cancel_sends_sigterm_soon_after_should_cancel_turns_true() -> None:
    started = time.monotonic()
    outcome, out = run("sleep 30", should_cancel=lambda: time.monotonic() - started > 0.3)
    assert time.monotonic() - started < 1.0
    assert outcome.cancelled and not outcome.timed_out
    assert outcome.signal == signal.SIGTERM
    assert out.texts("system") == ["hodei: cancelled, sent SIGTERM to the process group"]


def test_should_cancel_that_raises_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise RuntimeError("store is down")

    with caplog.at_level(logging.ERROR, logger="hodei.runtime.runner"):
        outcome, out = run("sleep 0.3; echo ok", should_cancel=broken)
    assert (outcome.exit_code, outcome.cancelled) == (0, False)
    assert out.texts("stdout") == ["ok"]
    assert any("should_cancel failed" in record.message for record in caplog.records)


def test_background_child_does_not_hang_the_run_and_is_killed(subreaper: None) -> None:
    started = time.monotonic()
    outcome, out = run("sleep 100 & echo $!; echo done")
    assert time.monotonic() - started < 2.0
    assert outcome.exit_code == 0
    background_pid, last = out.texts("stdout")
    assert last == "done"
    with pytest.raises(ProcessLookupError):
        os.kill(int(background_pid), 0)


def test_background_child_is_killed_even_when_orphans_go_to_init() -> None:
    # Without a subreaper the killed child may linger as a zombie under init, so look at its
    # state rather than its existence.
    if not Path("/proc/self/stat").exists():
        unavailable("needs /proc")
    outcome, out = run("sleep 100 & echo $!")
    assert outcome.exit_code == 0
    stat = Path(f"/proc/{out.texts('stdout')[0]}/stat")

    def check() -> None:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            raise ProcessLookupError from None
        if state in ("Z", "X"):
            raise ProcessLookupError

    wait_until_gone(check)


def test_batches_respect_flush_max_lines_and_keep_order() -> None:
    runner = CommandRunner(flush_interval_s=10.0, flush_max_lines=50)
    outcome, out = run("seq 1 1000", runner=runner)
    assert outcome.exit_code == 0
    assert out.texts("stdout") == [str(i) for i in range(1, 1001)]
    assert max(len(batch) for batch in out.batches) <= 50


def test_lines_are_flushed_on_the_interval_while_the_command_runs() -> None:
    seen_at: list[tuple[str, float]] = []

    def on_output(batch: list[OutputLine]) -> None:
        seen_at.extend((line.line, time.monotonic()) for line in batch)

    runner = CommandRunner(flush_interval_s=0.05)
    outcome = runner.run(
        "echo first; sleep 0.5; echo second",
        env=ENV,
        cwd=None,
        timeout_s=5,
        on_output=on_output,
        should_cancel=lambda: False,
    )
    assert outcome.exit_code == 0
    assert [text for text, _ in seen_at] == ["first", "second"]
    assert seen_at[1][1] - seen_at[0][1] > 0.3  # "first" came out before the command ended


def test_output_without_trailing_newline_is_delivered() -> None:
    outcome, out = run("printf 'no newline'; printf 'err' >&2")
    assert outcome.exit_code == 0
    assert out.texts("stdout") == ["no newline"]
    assert out.texts("stderr") == ["err"]


def test_long_lines_are_cut_with_a_note_in_system_and_bytes_are_kept() -> None:
    script = (
        "import sys; sys.stdout.buffer.write(b'x' * 200000 + b'\\nafter\\n\\xff\\r\\na\\x00b');"
        "sys.stdout.flush()"
    )
    outcome, out = run([sys.executable, "-c", script])
    assert outcome.exit_code == 0
    assert out.texts("stdout") == ["x" * MAX_LINE_BYTES, "after", "\ufffd", "a\ufffdb"]
    assert [ln.data for ln in out.lines if ln.stream == "stdout"] == [
        b"x" * MAX_LINE_BYTES + b"\n",
        b"after\n",
        b"\xff\r\n",
        b"a\x00b",
    ]
    assert out.texts("system") == [
        f"hodei: a stdout line of 200000 bytes was cut to its first {MAX_LINE_BYTES} bytes"
        " (longer lines are not kept whole)"
    ]


def test_parallel_runs_do_not_mix_output() -> None:
    results: dict[str, Collector] = {}
    callers: dict[str, int] = {}

    def worker(tag: str) -> None:
        callers[tag] = threading.get_ident()
        collector = Collector()
        FAST.run(
            f"for i in $(seq 1 300); do echo {tag}$i; echo {tag}e$i >&2; done",
            env=ENV,
            cwd=None,
            timeout_s=10,
            on_output=collector,
            should_cancel=lambda: False,
        )
        results[tag] = collector

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in ("A", "B", "C")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    for tag in ("A", "B", "C"):
        assert results[tag].texts("stdout") == [f"{tag}{i}" for i in range(1, 301)]
        assert results[tag].texts("stderr") == [f"{tag}e{i}" for i in range(1, 301)]
        assert results[tag].threads == {callers[tag]}


def test_on_output_that_raises_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[list[str]] = []

    def flaky(batch: list[OutputLine]) -> None:
        calls.append([line.line for line in batch])
        if len(calls) == 1:
            raise RuntimeError("store is down")

    runner = CommandRunner(flush_interval_s=10.0, flush_max_lines=2)
    with caplog.at_level(logging.ERROR, logger="hodei.runtime.runner"):
        outcome = runner.run(
            "seq 1 4",
            env=ENV,
            cwd=None,
            timeout_s=5,
            on_output=flaky,
            should_cancel=lambda: False,
        )
    assert outcome.exit_code == 0
    assert calls == [["1", "2"], ["3", "4"]]
    assert any("on_output failed" in record.message for record in caplog.records)


class Interrupted(BaseException):
    pass


def test_the_job_does_not_outlive_a_run_left_by_an_exception(subreaper: None) -> None:
    pids: list[int] = []

    def interrupt_after_first_line() -> bool:
        if pids:
            raise Interrupted
        return False

    def on_output(batch: list[OutputLine]) -> None:
        pids.extend(int(line.line) for line in batch if line.stream == "stdout")

    runner = CommandRunner(flush_interval_s=0.0, cancel_check_interval_s=0.01)
    with pytest.raises(Interrupted):
        runner.run(
            "echo $$; sleep 30",
            env=ENV,
            cwd=None,
            timeout_s=10,
            on_output=on_output,
            should_cancel=interrupt_after_first_line,
        )
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)


def test_a_short_command_is_not_checked_for_cancellation() -> None:
    calls: list[float] = []

    def count() -> bool:
        calls.append(time.monotonic())
        return False

    outcome, _ = run("true", should_cancel=count)
    assert outcome.exit_code == 0
    assert calls == []


def test_a_command_that_closes_its_output_is_still_timed_out(subreaper: None) -> None:
    # Both pipes end long before the process does: the exit, not the pipes, ends the run.
    started = time.monotonic()
    outcome, out = run("echo bye; exec >&- 2>&-; sleep 30", timeout_s=1)
    assert outcome.timed_out
    assert out.texts("stdout") == ["bye"]
    assert time.monotonic() - started < 10


def test_without_pidfds_a_thread_watches_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the kernel has no pidfd_open (macOS, Linux < 5.3), the exit comes from a thread.
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    before = threading.active_count()
    outcome, out = run("echo out; echo err >&2; exit 3")
    assert outcome.exit_code == 3
    assert (out.texts("stdout"), out.texts("stderr")) == (["out"], ["err"])
    timed, _ = run("sleep 30", timeout_s=1)
    assert timed.timed_out
    assert threading.active_count() == before


@pytest.mark.parametrize("chunk_size", [1, 2, 7, MAX_LINE_BYTES, 10 * MAX_LINE_BYTES])
def test_lines_do_not_depend_on_how_the_pipe_cuts_the_bytes(chunk_size: int) -> None:
    from hodei.runtime.runner import _LineReader

    data = (
        b"first\r\n"
        + b"y" * (MAX_LINE_BYTES + 5)
        + b"\nexact"
        + b"z" * (MAX_LINE_BYTES - 5)
        + b"\n\nlast \xff"
    )
    reader = _LineReader("stdout")
    out = []
    for i in range(0, len(data), chunk_size):
        out += reader.feed(data[i : i + chunk_size])
    out += reader.finish()
    assert out == [
        ("stdout", b"first\r\n"),
        ("stdout", b"y" * MAX_LINE_BYTES + b"\n"),
        (
            "system",
            f"hodei: a stdout line of {MAX_LINE_BYTES + 5} bytes was cut to its first"
            f" {MAX_LINE_BYTES} bytes (longer lines are not kept whole)\n".encode(),
        ),
        ("stdout", b"exact" + b"z" * (MAX_LINE_BYTES - 5) + b"\n"),
        ("stdout", b"\n"),
        ("stdout", b"last \xff"),
    ]


def cgroups_usable() -> bool:
    group = proctree.RunCgroup.create(f"probe-{os.getpid()}")
    if group is None:
        return False
    group.remove()
    return True


@pytest.fixture(params=["cgroup", "subreaper", "marker-scan"])
def mechanism(request: pytest.FixtureRequest) -> Iterator[CommandRunner]:
    """A runner that finds escaped processes by one mechanism: a cgroup per run, the
    subtree of a subreaper, or (orphans gone to init) a scan of /proc for the marker."""
    if not Path("/proc/self/stat").exists():
        unavailable("needs /proc")
    use_cgroup = request.param == "cgroup"
    if use_cgroup and not cgroups_usable():
        unavailable("this process may not create a cgroup v2 here")
    reaper = request.param == "subreaper"
    if reaper:
        request.getfixturevalue("subreaper")
    assert proctree.is_subreaper() is reaper
    yield CommandRunner(
        flush_interval_s=0.05, grace_s=0.5, cancel_check_interval_s=0.05, use_cgroup=use_cgroup
    )


@pytest.mark.parametrize("ending", ["exit", "timeout", "cancel"])
def test_processes_that_left_the_group_do_not_survive_the_run(
    mechanism: CommandRunner, ending: str
) -> None:
    tag = f"{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    then = "echo done" if ending == "exit" else "sleep 30"
    started = time.monotonic()
    try:
        outcome, out = run(
            escaping_command(tag, then, marked_only=not mechanism.use_cgroup),
            runner=mechanism,
            timeout_s=1.5 if ending == "timeout" else 20,
            should_cancel=lambda: ending == "cancel" and time.monotonic() - started > 1.0,
        )
        assert time.monotonic() - started < 4  # no wait for pipes an escapee held
        assert (outcome.timed_out, outcome.cancelled) == (ending == "timeout", ending == "cancel")
        assert survivors(tag) == []
        if ending == "exit":  # (on a stop, a cgroup's processes get the SIGTERM too)
            assert any("left running outside its process group" in t for t in out.texts("system"))
    finally:
        kill_survivors(tag)


def test_the_run_marker_is_in_the_command_s_environment() -> None:
    _, out1 = run(f'echo "${proctree.RUN_ID_ENV}"')
    _, out2 = run(f'echo "${proctree.RUN_ID_ENV}"')
    markers = out1.texts("stdout") + out2.texts("stdout")
    assert len(markers) == 2 and all(len(m) == 32 for m in markers)
    assert markers[0] != markers[1]
