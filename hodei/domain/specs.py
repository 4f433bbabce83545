"""What a user asks hodei to run: :class:`JobSpec`, validated with clear messages."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hodei.errors import InvalidJobSpec

MAX_NAME_LENGTH = 200
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 7 * 24 * 3600
DEFAULT_TIMEOUT_S = 3600
MAX_ATTEMPTS = 20
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


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

    @classmethod
    def create(
        cls,
        command: str | Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, Any] | None = None,
        working_dir: str | None = None,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | Mapping[str, float] | None = None,
        labels: Mapping[str, Any] | None = None,
        regions: Sequence[str] = (),
        provider: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobSpec:
        """Validate every field and return the spec, or raise :class:`InvalidJobSpec`
        whose one-line message names each problem."""
        problems: list[str] = []
        cmd = _check_command(command, problems)
        spec = cls(
            name=_check_name(name, cmd, problems),
            command=cmd,
            env=_check_env(env or {}, problems),
            working_dir=_check_working_dir(working_dir, problems),
            timeout_s=_check_int(
                "timeout", timeout_s, DEFAULT_TIMEOUT_S, MIN_TIMEOUT_S, MAX_TIMEOUT_S, problems, "s"
            ),
            max_attempts=_check_int("max_attempts", max_attempts, 1, 1, MAX_ATTEMPTS, problems),
            retry=_check_retry(retry, problems),
            labels=_check_labels(labels or {}, problems),
            regions=_check_regions(regions, problems),
            provider=_check_optional_text("provider", provider, 63, problems),
            correlation_id=_check_correlation_id(correlation_id, problems),
            idempotency_key=_check_optional_text("idempotency_key", idempotency_key, 200, problems),
        )
        if problems:
            raise InvalidJobSpec("invalid job: " + "; ".join(problems))
        return spec

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Validate and rebuild a spec from :meth:`to_dict` output or user JSON."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
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
        }


def _check_command(command: object, problems: list[str]) -> str | tuple[str, ...]:
    if isinstance(command, str):
        if not command.strip():
            problems.append("command must not be empty")
        elif "\x00" in command:
            problems.append("command must not contain NUL bytes")
        return command
    if isinstance(command, Sequence) and not isinstance(command, bytes):
        argv = tuple(command)
        if not argv:
            problems.append("command must not be empty")
        elif not all(isinstance(a, str) for a in argv):
            problems.append("every argument of command must be a string")
        elif not argv[0]:
            problems.append("command's program must not be empty")
        return tuple(str(a) for a in argv)
    problems.append("command must be a string or a list of strings")
    return ""


def _check_name(name: str | None, command: str | tuple[str, ...], problems: list[str]) -> str:
    if name is None:
        text = command if isinstance(command, str) else " ".join(command)
        return " ".join(text.split())[:MAX_NAME_LENGTH] or "job"
    if not isinstance(name, str) or not name.strip():
        problems.append("name must not be empty")
        return str(name or "")
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"name must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    return name


def _check_env(env: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    if not isinstance(env, Mapping):
        problems.append("env must be a mapping of names to strings")
        return {}
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            problems.append(f"env name {key!r} is not a valid variable name")
        elif not isinstance(value, str):
            problems.append(f"env {key} must be a string, got {type(value).__name__}")
        elif "\x00" in value:
            problems.append(f"env {key} must not contain NUL bytes")
        else:
            out[key] = value
    return out


def _check_working_dir(working_dir: str | None, problems: list[str]) -> str | None:
    if working_dir is None:
        return None
    if not isinstance(working_dir, str) or not working_dir.startswith("/"):
        problems.append(f"working_dir must be an absolute path, got {working_dir!r}")
    return working_dir


def _check_int(
    name: str,
    value: float | None,
    default: int,
    low: int,
    high: int,
    problems: list[str],
    unit: str = "",
) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        problems.append(f"{name} must be a whole number, got {value!r}")
        return default
    if not low <= value <= high:
        problems.append(f"{name} must be between {low}{unit} and {high}{unit}, got {value:g}{unit}")
    return int(value)


def _check_retry(
    retry: RetryPolicy | Mapping[str, float] | None, problems: list[str]
) -> RetryPolicy:
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, Mapping):
        try:
            retry = RetryPolicy(**retry)
        except TypeError:
            problems.append("retry accepts backoff_s, factor and max_backoff_s")
            return RetryPolicy()
    if not (0 <= retry.backoff_s <= MAX_TIMEOUT_S and 1 <= retry.factor <= 10):
        problems.append("retry backoff must be 0..604800 s with a factor of 1..10")
    if retry.max_backoff_s < retry.backoff_s:
        problems.append("retry max_backoff_s must be at least backoff_s")
    return retry


def _check_labels(labels: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            problems.append(f"label key {key!r} is not valid (letters, digits, . _ - /; max 63)")
        elif not isinstance(value, str) or len(value) > 63:
            problems.append(f"label {key} must be a string of at most 63 characters")
        else:
            out[key] = value
    return out


def _check_regions(regions: Sequence[str], problems: list[str]) -> tuple[str, ...]:
    if isinstance(regions, str):
        regions = [regions]
    out = tuple(dict.fromkeys(r.strip() for r in regions if isinstance(r, str) and r.strip()))
    if len(out) != len([r for r in regions if r]):
        problems.append("regions must be non-empty strings")
    return out


def _check_optional_text(
    name: str, value: str | None, max_length: int, problems: list[str]
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        problems.append(f"{name} must be 1..{max_length} characters")
    return value


def _check_correlation_id(value: str | None, problems: list[str]) -> str | None:
    if value is not None and (not isinstance(value, str) or not _CORRELATION_ID.match(value)):
        problems.append("correlation_id must be 1..128 letters, digits or . _ : -")
    return value
