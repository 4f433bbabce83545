"""What a user asks hodei to run: :class:`JobSpec`, validated with clear messages."""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from hodei.domain.inputs import (
    MAX_SPAN,
    label_problem,
    number_problem,
    quoted,
    text_problem,
    utf8_size,
)
from hodei.errors import InvalidJobSpec

MAX_NAME_LENGTH = 200
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 7 * 24 * 3600
DEFAULT_TIMEOUT_S = 3600
MAX_ATTEMPTS = 20
MAX_LABEL_LENGTH = 63
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_WORKING_DIR_BYTES = 4096  # PATH_MAX
MAX_RETRY_FACTOR = 10
# The kernel refuses to exec a program when one argv or environ string is over 128 KiB
# (MAX_ARG_STRLEN) or all of them together are over ARG_MAX (a quarter of the stack
# limit, 2 MiB by default), with "Argument list too long". The worker adds its own
# environment, so a job gets well under both, checked at submit rather than at spawn.
MAX_ARG_BYTES = 64 * 1024
"""Most UTF-8 bytes in one argument of the command (or the whole shell string) and in
one ``KEY=value`` env entry."""
MAX_COMMAND_ENV_BYTES = 512 * 1024
"""Most UTF-8 bytes of the command and the env together."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
_CORRELATION_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_RETRY_FIELDS = ("backoff_s", "factor", "max_backoff_s")
MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5
MAX_CONCURRENCY = 10_000
MAX_CONCURRENCY_KEY_LENGTH = 200
MAX_DEPENDENCIES = 10_000
MIN_ID_PREFIX = 8
"""Hex digits the start of an id must have: the short ids hodei prints are this long."""
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before attempt n+1: ``backoff_s * factor**(n-1)``, capped."""

    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 300.0

    def delay_s(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        delay = self.backoff_s * self.factor ** max(failed_attempt - 1, 0)
        return float(min(delay, self.max_backoff_s))


@dataclass(frozen=True)
class JobSpec:
    """A validated job specification. Build it with :meth:`create`."""

    name: str
    command: str | tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S
    max_attempts: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    labels: Mapping[str, str] = field(default_factory=dict)
    regions: tuple[str, ...] = ()
    provider: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    # When and in what order (the job's gates, services/jobs/gates.py): not before run_at;
    # at most max_concurrency RUNNING with the same concurrency_key; only once every
    # job in ``after`` has ended (an int is the index of a job of the same submit_many,
    # a str the start of a job's id as hodei prints it, both replaced by the job's whole
    # id when stored); higher priority starts first.
    priority: int = DEFAULT_PRIORITY
    run_at: datetime | None = None
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    after: tuple[UUID | int | str, ...] = ()
    after_any: bool = False
    # Handed to the job's process only: stored encrypted, never in to_dict(), events or
    # output (masked there); the submitter's own copy is the only clear one.
    secret_env: Mapping[str, str] = field(
        default_factory=dict, repr=False, metadata={"exclude": True}
    )

    @classmethod
    def create(
        cls,
        command: str | Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | Mapping[str, float] | None = None,
        labels: Mapping[str, str] | None = None,
        regions: Sequence[str] | str | None = None,
        provider: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        secret_env: Mapping[str, str] | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | str | None = None,
        concurrency_key: str | None = None,
        max_concurrency: int | None = None,
        after: Sequence[UUID | str | int] | None = None,
        after_any: bool | None = None,
    ) -> JobSpec:
        """Validate every field and return the spec, or raise :class:`InvalidJobSpec`
        whose one-line message names each problem.

        Every field is type-checked; numbers must be finite and in range; text must
        be valid UTF-8 without NUL bytes (and names, labels, regions, provider and
        idempotency key without control characters); the command and env must fit
        :data:`MAX_ARG_BYTES` per string and :data:`MAX_COMMAND_ENV_BYTES` together.
        """
        problems: list[str] = []
        cmd = _check_command(command, problems)
        checked_env = _check_env(env, problems)
        checked_secrets = _check_env(secret_env, problems, what="secret_env")
        for key in sorted(set(checked_env) & set(checked_secrets)):
            problems.append(f"{key} is in both env and secret_env")
        _check_size(cmd, {**checked_env, **checked_secrets}, problems)
        spec = cls(
            name=_check_name(name, cmd, problems),
            command=cmd,
            env=checked_env,
            working_dir=_check_working_dir(working_dir, problems),
            timeout_s=_check_int(
                "timeout", timeout_s, DEFAULT_TIMEOUT_S, MIN_TIMEOUT_S, MAX_TIMEOUT_S, problems, "s"
            ),
            max_attempts=_check_int("max_attempts", max_attempts, 1, 1, MAX_ATTEMPTS, problems),
            retry=_check_retry(retry, problems),
            labels=_check_labels(labels, problems),
            regions=_check_regions(regions, problems),
            provider=_check_label_text("provider", provider, MAX_LABEL_LENGTH, problems),
            correlation_id=_check_correlation_id(correlation_id, problems),
            idempotency_key=_check_label_text(
                "idempotency_key", idempotency_key, MAX_IDEMPOTENCY_KEY_LENGTH, problems
            ),
            secret_env=checked_secrets,
            priority=_check_int(
                "priority", priority, DEFAULT_PRIORITY, MIN_PRIORITY, MAX_PRIORITY, problems
            ),
            run_at=_check_run_at(run_at, problems),
            concurrency_key=_check_label_text(
                "concurrency_key", concurrency_key, MAX_CONCURRENCY_KEY_LENGTH, problems
            ),
            max_concurrency=_check_max_concurrency(concurrency_key, max_concurrency, problems),
            after=_check_after(after, problems),
            after_any=_check_flag("after_any", after_any, problems),
        )
        if spec.after_any and not spec.after:
            problems.append("after_any needs after (the jobs to run after)")
        if problems:
            raise InvalidJobSpec("invalid job: " + "; ".join(problems))
        # Marks a spec create() checked, so submitting it does not check it again; a
        # spec built by hand (or by dataclasses.replace) is checked at submit.
        object.__setattr__(spec, "_checked", True)
        return spec

    def validated(self) -> JobSpec:
        """This spec if :meth:`create` built it, else the same fields validated."""
        if self.__dict__.get("_checked"):
            return self
        return JobSpec.create(
            self.command,
            name=self.name,
            env=self.env,
            working_dir=self.working_dir,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            retry=self.retry,
            labels=self.labels,
            regions=self.regions,
            provider=self.provider,
            correlation_id=self.correlation_id,
            idempotency_key=self.idempotency_key,
            secret_env=self.secret_env,
            priority=self.priority,
            run_at=self.run_at,
            concurrency_key=self.concurrency_key,
            max_concurrency=self.max_concurrency,
            after=self.after,
            after_any=self.after_any,
        )

    @property
    def gated(self) -> bool:
        """Whether the job waits for something before it is published (a due time,
        other jobs, a concurrency slot)."""
        return bool(self.run_at or self.after or self.concurrency_key)

    @property
    def argv(self) -> list[str]:
        """The command as an argv list (a string runs through ``/bin/sh -c``)."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)

    @property
    def command_text(self) -> str:
        """The command as one readable line."""
        if isinstance(self.command, str):
            return self.command
        return shlex.join(self.command)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        # Spelled out rather than dataclasses.asdict, whose deep copies cost a
        # submit_many of thousands a noticeable share of its time.
        return {
            "name": self.name,
            "command": self.command if isinstance(self.command, str) else list(self.command),
            "env": dict(self.env),
            "working_dir": self.working_dir,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "retry": {
                "backoff_s": self.retry.backoff_s,
                "factor": self.retry.factor,
                "max_backoff_s": self.retry.max_backoff_s,
            },
            "labels": dict(self.labels),
            "regions": list(self.regions),
            "provider": self.provider,
            "correlation_id": self.correlation_id,
            "idempotency_key": self.idempotency_key,
            "priority": self.priority,
            "run_at": self.run_at.isoformat() if self.run_at else None,
            "concurrency_key": self.concurrency_key,
            "max_concurrency": self.max_concurrency,
            "after": [a if isinstance(a, int) else str(a) for a in self.after],
            "after_any": self.after_any,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Validate and rebuild a spec from :meth:`to_dict` output or user JSON."""
        if not isinstance(data, Mapping):
            raise InvalidJobSpec("invalid job: a job must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(quoted(k) for k in set(data) - known)
        if unknown:
            raise InvalidJobSpec(f"invalid job: unknown field(s) {', '.join(unknown)}")
        if "command" not in data:
            raise InvalidJobSpec("invalid job: command is required")
        kwargs = {k: v for k, v in data.items() if k != "command"}
        return cls.create(data["command"], **kwargs)

    def summary(self) -> dict[str, Any]:
        """What JobCreated records: enough to recognise the job, no env values."""
        return {
            "name": self.name,
            "command": self.command_text[:500],
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "labels": dict(self.labels),
            "regions": list(self.regions),
            "provider": self.provider,
            "env_keys": sorted(self.env),
            "secret_env_keys": sorted(self.secret_env),
            **({"priority": self.priority} if self.priority != DEFAULT_PRIORITY else {}),
        }


def _check_command(command: object, problems: list[str]) -> str | tuple[str, ...]:
    if isinstance(command, str):
        if not command.strip():
            problems.append("command must not be empty")
        else:
            _text("command", command, problems, limit=MAX_ARG_BYTES)
        return command
    if isinstance(command, Sequence) and not isinstance(command, bytes | bytearray):
        argv = tuple(command)
        if not argv:
            problems.append("command must not be empty")
            return ()
        if not all(isinstance(a, str) for a in argv):
            problems.append("every argument of command must be a string")
            return ()
        if not argv[0]:
            problems.append("command's program must not be empty")
        for i, arg in enumerate(argv):
            if not _text(f"command argument {i}", arg, problems, limit=MAX_ARG_BYTES):
                break  # one bad argument is enough to say
        return argv
    problems.append(f"command must be a string or a list of strings, got {type(command).__name__}")
    return ""


def _text(what: str, value: str, problems: list[str], *, limit: int | None = None) -> bool:
    """Append why ``value`` is not storable text (or is over ``limit`` bytes)."""
    problem = text_problem(value)
    if problem is None and limit is not None and utf8_size(value) > limit:
        problem = f"must be at most {limit // 1024} KiB, got {utf8_size(value) // 1024} KiB"
    if problem is not None:
        problems.append(f"{what} {problem}")
        return False
    return True


def _check_size(
    command: str | tuple[str, ...], env: Mapping[str, str], problems: list[str]
) -> None:
    args = [command] if isinstance(command, str) else list(command)
    total = sum(utf8_size(a) + 1 for a in args) + sum(
        len(k) + utf8_size(v) + 2 for k, v in env.items()
    )
    if total > MAX_COMMAND_ENV_BYTES:
        problems.append(
            f"command and env together must be at most {MAX_COMMAND_ENV_BYTES // 1024} KiB, "
            f"got {total // 1024} KiB"
        )


def _check_name(name: object, command: str | tuple[str, ...], problems: list[str]) -> str:
    if name is None:
        text = command if isinstance(command, str) else " ".join(command)
        # The default name is one printable line of the command.
        derived = " ".join(_CONTROLS.sub(" ", text[: MAX_NAME_LENGTH * 4]).split())
        return derived[:MAX_NAME_LENGTH] or "job"
    if not isinstance(name, str):
        problems.append(f"name must be a string, got {type(name).__name__}")
        return ""
    if not name.strip():
        problems.append("name must not be empty")
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(f"name must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    elif (problem := label_problem(name)) is not None:
        problems.append(f"name {problem}")
    return name


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_env(env: object, problems: list[str], *, what: str = "env") -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        problems.append(f"{what} must be a mapping of names to strings, got {type(env).__name__}")
        return {}
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.append(f"{what} name {quoted(key)} is not a valid variable name")
        elif not isinstance(value, str):
            # The type, never the value: a secret's value is in no error message.
            problems.append(f"{what} {key} must be a string, got {type(value).__name__}")
        elif _text(f"{what} {key}", value, problems):
            if len(key) + 1 + utf8_size(value) > MAX_ARG_BYTES:
                problems.append(f"{what} {key} must be at most {MAX_ARG_BYTES // 1024} KiB")
            else:
                out[key] = value
    return out


def _check_working_dir(working_dir: object, problems: list[str]) -> str | None:
    if working_dir is None:
        return None
    if not isinstance(working_dir, str) or not working_dir.startswith("/"):
        problems.append(f"working_dir must be an absolute path, got {quoted(working_dir)}")
        return None
    _text("working_dir", working_dir, problems, limit=MAX_WORKING_DIR_BYTES)
    return working_dir


def _check_int(
    name: str,
    value: object,
    default: int,
    low: int,
    high: int,
    problems: list[str],
    unit: str = "",
) -> int:
    if value is None:
        return default
    problem = number_problem(value, low, high, whole=True, unit=unit)
    if problem is not None:
        problems.append(f"{name} {problem}")
        return default
    return int(cast(float, value))


def _check_retry(retry: object, problems: list[str]) -> RetryPolicy:
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        given: Mapping[Any, object] = {f: getattr(retry, f) for f in _RETRY_FIELDS}
    elif isinstance(retry, Mapping):
        given = retry
    else:
        problems.append(f"retry must be a RetryPolicy or a mapping, got {type(retry).__name__}")
        return RetryPolicy()
    unknown = [k for k in given if k not in _RETRY_FIELDS]
    if unknown:
        problems.append(
            f"retry accepts backoff_s, factor and max_backoff_s, not {quoted(unknown[0])}"
        )
        return RetryPolicy()
    defaults = RetryPolicy()
    values: dict[str, float] = {}
    limits = {"backoff_s": (0, MAX_TIMEOUT_S), "factor": (1, MAX_RETRY_FACTOR)}
    limits["max_backoff_s"] = (0, MAX_TIMEOUT_S)
    for key in _RETRY_FIELDS:
        value = given.get(key)
        if value is None:
            values[key] = getattr(defaults, key)
            continue
        low, high = limits[key]
        problem = number_problem(value, low, high, unit="" if key == "factor" else "s")
        if problem is not None:
            problems.append(f"retry {key} {problem}")
            return RetryPolicy()
        values[key] = float(cast(float, value))
    if values["max_backoff_s"] < values["backoff_s"]:
        problems.append("retry max_backoff_s must be at least backoff_s")
    return RetryPolicy(**values)


def _check_labels(labels: object, problems: list[str]) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        problems.append(f"labels must be a mapping of keys to strings, got {type(labels).__name__}")
        return {}
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            problems.append(
                f"label key {quoted(key)} is not valid (letters, digits, . _ - /; max 63)"
            )
        elif not isinstance(value, str) or len(value) > MAX_LABEL_LENGTH:
            problems.append(f"label {key} must be a string of at most 63 characters")
        elif (problem := label_problem(value)) is not None:
            problems.append(f"label {key} {problem}")
        else:
            out[key] = value
    return out


def _check_regions(regions: object, problems: list[str]) -> tuple[str, ...]:
    if regions is None:
        return ()
    if isinstance(regions, str):
        regions = [regions]
    if not isinstance(regions, Sequence) or isinstance(regions, bytes | bytearray):
        problems.append(f"regions must be a list of strings, got {type(regions).__name__}")
        return ()
    out: list[str] = []
    for region in regions:
        if not isinstance(region, str) or not region.strip() or len(region) > MAX_LABEL_LENGTH:
            problems.append("regions must be non-empty strings of at most 63 characters")
            return ()
        if (problem := label_problem(region)) is not None:
            problems.append(f"region {quoted(region)} {problem}")
            return ()
        out.append(region.strip())
    return tuple(dict.fromkeys(out))


def _check_label_text(name: str, value: object, max_length: int, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        problems.append(f"{name} must be 1..{max_length} characters")
        return None
    if (problem := label_problem(value)) is not None:
        problems.append(f"{name} {problem}")
    return value


def _check_correlation_id(value: object, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CORRELATION_ID.fullmatch(value):
        problems.append("correlation_id must be 1..128 letters, digits or . _ : -")
        return None
    return value


def _check_run_at(value: object, problems: list[str]) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        # A delay: from now on the submitting machine's clock. Checked before the
        # addition, which overflows past year 9999.
        if abs(value) > MAX_SPAN:
            problems.append(f"run_at must be at most 100 years from now, got {value.days} days")
            return None
        return datetime.now(UTC) + value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            problems.append(f"run_at must be an ISO 8601 time, got {quoted(value)}")
            return None
    if not isinstance(value, datetime):
        problems.append(f"run_at must be a datetime, got {type(value).__name__}")
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        problems.append("run_at must name its time zone (e.g. 2030-01-01T09:00:00+00:00)")
        return None
    # One bound for every client (CLI --at, SDK, API): a time further off is a typo, and
    # one near year 1 or 9999 may not exist in UTC, where the store keeps it.
    now = datetime.now(UTC)
    if not now - MAX_SPAN <= value <= now + MAX_SPAN:
        problems.append(
            f"run_at must be at most 100 years from now, got {quoted(value.isoformat())}"
        )
        return None
    return value


def _check_max_concurrency(key: object, value: object, problems: list[str]) -> int | None:
    if key is None:
        if value is not None:
            problems.append("max_concurrency needs a concurrency_key")
        return None
    return _check_int("max_concurrency", value, 1, 1, MAX_CONCURRENCY, problems)


def _check_after(value: object, problems: list[str]) -> tuple[UUID | int | str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray):
        # A lone id is refused rather than read as a list of one: a str is a sequence
        # too, and a mistaken type should be named, not half guessed.
        problems.append(f"after must be a list of job ids, got {type(value).__name__}")
        return ()
    if len(value) > MAX_DEPENDENCIES:
        problems.append(f"after may name at most {MAX_DEPENDENCIES} jobs, got {len(value)}")
        return ()
    out: list[UUID | int | str] = []
    for item in value:
        if isinstance(item, bool):
            problems.append("after must name job ids, not true/false")
            return ()
        if isinstance(item, int):
            if item < 0:
                problems.append(f"after index {item} is negative")
                return ()
            out.append(item)
        elif isinstance(item, UUID):
            out.append(item)
        elif isinstance(item, str):
            ref = id_ref(item)
            if ref is None:
                problems.append(
                    f"after: not a job id: {quoted(item)} (give the whole id or at least "
                    f"its first {MIN_ID_PREFIX} hex digits)"
                )
                return ()
            out.append(ref)
        else:
            problems.append(f"after must name job ids, got {type(item).__name__}")
            return ()
    return tuple(dict.fromkeys(out))


def id_ref(text: str) -> UUID | str | None:
    """A whole id, or the start of one as lowercase hex digits (dashes dropped, at least
    :data:`MIN_ID_PREFIX` of them), or None if ``text`` is neither."""
    text = text.strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    digits = text.lower().replace("-", "")
    if MIN_ID_PREFIX <= len(digits) < 32 and _HEX.fullmatch(digits):
        return digits
    return None


def _check_flag(name: str, value: object, problems: list[str]) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.append(f"{name} must be true or false, got {type(value).__name__}")
        return False
    return value
