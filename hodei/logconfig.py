"""Logging for entry points: text or JSON, with job_id, worker_id, attempt and
correlation_id as fields, and secrets masked. Only entry points call this."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("job_id", "worker_id", "attempt", "correlation_id", "provider")
_SECRET = re.compile(
    r"(?P<url>[a-z0-9+.-]+://[^:/@\s]*:)[^@\s]+(?=@)"
    r"|(?P<kv>\b(?:HODEI_OTP_TOKEN|password|passwd|secret|token)\s*[=:]\s*)\S+"
    r"|(?P<tok>\bhodei_)[A-Za-z0-9_\-]{20,}",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs, ``token=...`` pairs and hodei bootstrap tokens."""

    def _sub(m: re.Match[str]) -> str:
        return (m.group("url") or m.group("kv") or m.group("tok") or "") + "***"

    return _SECRET.sub(_sub, text)


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
        return f"{text} [{context}]" if context else text


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send hodei's, Celery's and everyone's logs to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless we debug.
    for noisy in ("kombu", "amqp", "urllib3", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")
