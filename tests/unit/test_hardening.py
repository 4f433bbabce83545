"""runtime/hardening: the job user a worker picks, and what it removes from its environment."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from hodei.runtime import hardening


def test_a_root_worker_runs_jobs_as_nobody_by_default() -> None:
    user = hardening.job_user("", euid=0)
    assert user is not None and user.uid == pwd.getpwnam("nobody").pw_uid
    assert user.name == "nobody"


def test_a_non_root_worker_runs_jobs_as_itself_by_default() -> None:
    assert hardening.job_user("", euid=12345) is None


def test_root_can_be_asked_for_and_a_uid_without_a_name_is_taken() -> None:
    assert hardening.job_user("root", euid=0) is None
    assert hardening.job_user("0", euid=0) is None
    unnamed = hardening.job_user("54321", euid=0)
    assert unnamed is not None and (unnamed.uid, unnamed.gid, unnamed.home) == (54321, 54321, "/")


def test_an_unknown_user_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="HODEI_JOB_USER: no such user 'no-such-user-x'"):
        hardening.job_user("no-such-user-x", euid=0)


def test_only_a_root_worker_may_name_another_user() -> None:
    with pytest.raises(ValueError, match="a worker running as uid 12345 cannot run jobs as"):
        hardening.job_user("nobody", euid=12345)
    assert hardening.job_user(str(12345), euid=12345) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_an_undumpable_process_has_no_secret_left_in_os_environ() -> None:
    code = (
        "import os; from hodei.runtime import hardening;"
        "print(hardening.make_undumpable(), sorted(hardening.scrub_environment()),"
        " 'HODEI_DATABASE_URL' in os.environ, os.environ['HODEI_LOG_LEVEL'])"
    )
    env = {
        **os.environ,
        "HODEI_DATABASE_URL": "x",
        "HODEI_OTP_TOKEN": "y",
        "HODEI_LOG_LEVEL": "INFO",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [
        "True",
        "['HODEI_DATABASE_URL',",
        "'HODEI_OTP_TOKEN']",
        "False",
        "INFO",
    ]
