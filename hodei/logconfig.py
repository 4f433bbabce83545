"""Logging for entry points: text or JSON, with job_id, worker_id, attempt and
correlation_id as fields, and secrets masked. Only entry points call this."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from hodei.domain.urls import mask_url

CONTEXT_FIELDS = ("job_id", "worker_id", "attempt", "correlation_id", "provider")
_SECRET = re.compile(
    r"(?P<kv>\b(?:\w*(?:OTP_TOKEN|BASIC_AUTH|PASSWORD|SECRET|API_KEY)|password|passwd|secret"
    r"|token)\s*[=:]\s*)\S+"
    r"|(?P<tok>\bhodei_)[A-Za-z0-9_\-]{20,}",
    re.IGNORECASE,
)


# Every secret _SECRET can match contains one of these (lower-cased); a worker logs a few
# lines per job, and most hold none of them, so the regex (about 2% of a worker's CPU
# when run on every line) is skipped for those.
_SECRET_HINTS = ("://", "hodei_", "token", "pass", "secret", "api_key", "basic_auth")


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs, ``token=...`` pairs and hodei bootstrap tokens."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _SECRET_HINTS):
        return text

    def _sub(m: re.Match[str]) -> str:
        return (m.group("kv") or m.group("tok") or "") + "***"

    # URLs as hodei.domain.urls masks them (credentials up to the last '@' before the
    # host), in one place.
    return _SECRET.sub(_sub, mask_url(text) if "://" in text else text)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, context fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                data[name] = value
        if record.exc_info:
            data["exc_info"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines, with whatever context fields the record carries appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) not in (None, "")
        )
        text = f"{text} [{context}]" if context else text
        return mask_secrets(text) if record.exc_info else text


class CliFormatter(logging.Formatter):
    """What a one-shot command prints of a record: ``hodei: warning: ...`` on one line, in
    the voice of its own messages, with no timestamp or logger name (tracebacks and the
    full format are for ``-v``)."""

    def format(self, record: logging.LogRecord) -> str:
        first = record.getMessage().strip().splitlines()
        return mask_secrets(f"hodei: {record.levelname.lower()}: {first[0] if first else ''}")


_RUN_JOB = "hodei.run_job"
# The publisher's argsrepr: "('<name>', id=<job id>, attempt=<n>)".
_ARGSREPR = re.compile(r"id=(?P<job_id>[0-9a-f-]{36}), attempt=(?P<attempt>\d+)")


class _TaskContextFilter(logging.Filter):
    """Give Celery's own records about a run-job task ("Task hodei.run_job[...]
    received", "... succeeded") the job_id and attempt hodei's records carry, so a
    job's lines can be selected by job_id whoever logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) or "celery" not in sys.modules:
            return True
        # "received" is logged by the consumer with the task's argsrepr in its args...
        context = record.args if isinstance(record.args, dict) else {}
        if context.get("name") == _RUN_JOB:
            found = _ARGSREPR.search(str(context.get("args", "")))
            if found:
                record.job_id, record.attempt = found["job_id"], int(found["attempt"])
                return True
        # ...the rest inside the task, where Celery knows the current task.
        from celery import current_task

        args = getattr(getattr(current_task, "request", None), "args", None)
        if getattr(current_task, "name", None) == _RUN_JOB and args and len(args) >= 2:
            record.job_id, record.attempt = str(args[0]), args[1]
        return True


# What configure_logging last set up, so Celery's setup_logging signal can keep it.
_active: tuple[str, str] | None = None


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send hodei's, Celery's and everyone's logs to stderr in one format: ``text``,
    ``json``, or ``cli`` (one-shot commands: :class:`CliFormatter`)."""
    global _active
    _active = (level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    formatters: dict[str, type[logging.Formatter]] = {
        "json": JsonFormatter,
        "cli": CliFormatter,
    }
    handler.setFormatter(formatters.get(fmt, TextFormatter)())
    handler.addFilter(_TaskContextFilter())
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Python warnings (Celery's superuser warning, deprecations) become records too.
    logging.captureWarnings(True)
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless we debug.
    for noisy in ("kombu", "amqp", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")


def celery_setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Receiver of Celery's ``setup_logging`` signal: with a receiver connected, Celery
    leaves logging alone, and its records go through hodei's format and masking."""
    if _active is not None:
        configure_logging(*_active)
        return
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_logging(str(level or "INFO"), "text")


def celery_quiet_banner(instance: Any = None, **_: Any) -> None:
    """Receiver of ``celeryd_init``: in JSON mode, skip Celery's multi-line startup
    banner, so every line of a worker's log is one JSON record."""
    if instance is not None and _active is not None and _active[1] == "json":
        instance.quiet = True
