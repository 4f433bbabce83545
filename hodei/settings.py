"""Typed, frozen settings. ``Settings.from_env`` is the only code that reads HODEI_*."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Re-exported: the CLI, SDK and runtime check and mask URLs through settings.
from hodei.domain.urls import URL_SPECIALS as URL_SPECIALS
from hodei.domain.urls import URL_SPECIALS_DATABASE as URL_SPECIALS_DATABASE
from hodei.domain.urls import check_url as check_url
from hodei.domain.urls import mask_url as mask_url
from hodei.errors import InvalidConfiguration

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/hodei``, else ``~/.local/share/hodei``.

    Not the current directory: a home that moved with the shell showed another, empty
    database to a user who ran hodei from elsewhere.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "hodei"


@dataclass(frozen=True)
class Settings:
    """Everything hodei can be configured with, from HODEI_* environment variables."""

    home: Path = field(default_factory=default_home)
    database_url: str = ""
    broker_url: str = ""
    log_level: str = "INFO"
    log_format: str = "text"
    worker_idle_timeout_s: float = 60.0
    heartbeat_interval_s: float = 10.0
    worker_stale_after_s: float = 60.0
    db_retry_window_s: float = 60.0
    token_ttl_s: float = 300.0
    worker_lost_requeues: int = 3
    retention_days: int = 30
    queue_timeout_s: float = 3600.0
    republish_after_s: float = 300.0
    cancel_grace_s: float = 5.0
    broker_wait_s: float = 60.0
    max_log_bytes: int = 64 * 1024 * 1024
    max_log_lines: int = 0
    flower_basic_auth: str = field(default="", repr=False)
    serve_address: str = "127.0.0.1"
    serve_port: int = 9464
    job_cgroup: str = "auto"  # "off": no cgroup per job even where one could be made
    # The user jobs run as ("" = the worker's own, but nobody for a root worker).
    job_user: str = ""
    # Fernet keys for secret_env: the one that encrypts, and older ones still read.
    secret_key: str = field(default="", repr=False)
    secret_keys: str = field(default="", repr=False)  # comma-separated
    # Where workers reach `hodei server`: set, providers launch API-mode workers, which
    # get this URL (as HODEI_API_URL) and no database URL or secret_env key.
    worker_api_url: str = ""
    # How long an API-mode worker's credential lasts without a recorded heartbeat.
    worker_credential_ttl_s: float = 600.0

    def __post_init__(self) -> None:
        # Absolute, so the URLs below and every child process name the same files.
        object.__setattr__(self, "home", Path(os.path.abspath(Path(self.home).expanduser())))
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'hodei.sqlite'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{self.home / 'broker.sqlite'}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # Seconds: NaN, infinity or a negative wait would make a loop spin or never end.
            if f.name.endswith("_s") and not (math.isfinite(value) and value >= 0):
                raise InvalidConfiguration(
                    f"{_env_name(f.name)} must be a number of seconds (0 or more), not {value!r}"
                )
        if not 0 <= self.serve_port <= 65535:
            raise InvalidConfiguration(
                f"HODEI_SERVE_PORT must be a port number (0..65535), not {self.serve_port}"
            )
        if self.log_level not in _LOG_LEVELS:
            raise InvalidConfiguration(
                f"HODEI_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {self.log_level!r}"
            )
        for name in ("max_log_bytes", "max_log_lines"):
            if getattr(self, name) < 0:
                raise InvalidConfiguration(
                    f"{_env_name(name)} must be 0 (no limit) or more, not {getattr(self, name)}"
                )
        if self.log_format not in _LOG_FORMATS:
            raise InvalidConfiguration(
                f"HODEI_LOG_FORMAT must be text or json, not {self.log_format!r}"
            )
        check_url("HODEI_DATABASE_URL", self.database_url, URL_SPECIALS_DATABASE)
        check_url("HODEI_BROKER_URL", self.broker_url)
        check_url("HODEI_WORKER_API_URL", self.worker_api_url)
        if self.worker_api_url and not self.worker_api_url.startswith(("http://", "https://")):
            raise InvalidConfiguration(
                f"HODEI_WORKER_API_URL must start with http:// or https://,"
                f" not {mask_url(self.worker_api_url)!r}"
            )
        if self.job_cgroup not in ("auto", "off"):
            raise InvalidConfiguration(
                f"HODEI_JOB_CGROUP must be auto or off, not {self.job_cgroup!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(_env_name(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        if "home" not in values:
            values["home"] = default_home(env)
        values.update(overrides)
        return cls(**values)

    def make_home(self) -> Path:
        """Create HODEI_HOME (and its parents) if it is missing; a one-line error if it
        cannot be created (a read-only parent, a file in the way)."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidConfiguration(
                f"HODEI_HOME {self.home} cannot be created: {exc.strerror or exc};"
                " set HODEI_HOME to a writable directory"
            ) from None
        return self.home

    @property
    def uses_home(self) -> bool:
        """True when the database or the broker is a file in HODEI_HOME."""
        home = str(self.home)
        return home in self.database_url or home in self.broker_url

    @property
    def is_embedded(self) -> bool:
        """True when the database is SQLite (the embedded default)."""
        return self.database_url.startswith("sqlite")

    def public_dict(self) -> dict[str, Any]:
        """The settings with every secret masked, for logs and ``hodei doctor``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["home"] = str(self.home)
        out["database_url"] = mask_url(self.database_url)
        out["broker_url"] = mask_url(self.broker_url)
        out["flower_basic_auth"] = "***" if self.flower_basic_auth else ""
        out["secret_key"] = "***" if self.secret_key else ""
        out["secret_keys"] = "***" if self.secret_keys else ""
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.public_dict().items())
        return f"Settings({shown})"

    def child_environment(self) -> dict[str, str]:
        """HODEI_* variables that reproduce these settings in a child process."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[_env_name(f.name)] = str(value.resolve() if isinstance(value, Path) else value)
        return out

    def container_environment(self) -> dict[str, str]:
        """:meth:`worker_environment` for a worker in a container or pod: without the
        settings that name this host's users (HODEI_JOB_USER: a user here may not exist
        there, and the image's worker runs as its own user; set it per provider in the
        provider's ``environment``)."""
        out = self.worker_environment()
        out.pop(_env_name("job_user"), None)
        return out

    @property
    def api_mode_workers(self) -> bool:
        """Whether providers launch workers that talk to the API (HODEI_WORKER_API_URL)."""
        return bool(self.worker_api_url)

    def worker_environment(self) -> dict[str, str]:
        """HODEI_* variables for a worker a provider launches: :meth:`child_environment`,
        or, with HODEI_WORKER_API_URL, an API-mode worker's: the API's URL as
        HODEI_API_URL and none of the control plane's keys (API_WORKER_OMITS)."""
        out = self.child_environment()
        if not self.api_mode_workers:
            return out
        for name in API_WORKER_OMITS:
            out.pop(name, None)
        out["HODEI_API_URL"] = self.worker_api_url
        return out


# What an API-mode worker never gets: the database (its URL, the key that opens the
# jobs' secret_env, Flower's password) is the control plane's, and HODEI_API_TOKEN, an
# operator's token, is a key of its own.
API_WORKER_OMITS = (
    "HODEI_DATABASE_URL",
    "HODEI_SECRET_KEY",
    "HODEI_SECRET_KEYS",
    "HODEI_FLOWER_BASIC_AUTH",
    "HODEI_API_TOKEN",
    "HODEI_WORKER_API_URL",
)


_ENV_ALIASES = {
    "worker_idle_timeout_s": "HODEI_WORKER_IDLE_TIMEOUT",
    "heartbeat_interval_s": "HODEI_HEARTBEAT_INTERVAL",
    "worker_stale_after_s": "HODEI_WORKER_STALE_AFTER",
    "db_retry_window_s": "HODEI_DB_RETRY_WINDOW",
    "token_ttl_s": "HODEI_TOKEN_TTL",
    "queue_timeout_s": "HODEI_QUEUE_TIMEOUT",
    "republish_after_s": "HODEI_REPUBLISH_AFTER",
    "cancel_grace_s": "HODEI_CANCEL_GRACE",
    "broker_wait_s": "HODEI_BROKER_WAIT",
    "worker_credential_ttl_s": "HODEI_WORKER_CREDENTIAL_TTL",
}


def _env_name(field_name: str) -> str:
    return _ENV_ALIASES.get(field_name, "HODEI_" + field_name.upper())


def _parse(name: str, type_name: object, raw: str) -> Any:
    try:
        if type_name in ("Path", Path):
            return Path(raw).expanduser()
        if type_name in ("float", float):
            return float(raw)
        if type_name in ("int", int):
            return int(raw)
    except ValueError:
        raise InvalidConfiguration(f"{_env_name(name)} must be a number, not {raw!r}") from None
    if name in ("log_level",):
        return raw.upper()
    return raw
