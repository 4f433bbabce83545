"""secret_env at rest: encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from
``cryptography``), opened only by the worker that runs the job.

The key is HODEI_SECRET_KEY; older keys in HODEI_SECRET_KEYS (comma-separated) still
open what they sealed (MultiFernet), so a key is rotated by making the new one
HODEI_SECRET_KEY and the old one HODEI_SECRET_KEYS (docs/operations.md). Without
HODEI_SECRET_KEY, a key file in HODEI_HOME (``secret.key``, mode 0600) is made on first
use: the embedded default's, shared by the local workers that share HODEI_HOME.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hodei.errors import InvalidConfiguration
from hodei.settings import Settings

KEY_FILE = "secret.key"


class SecretsUnreadable(Exception):
    """The stored secret_env cannot be opened with the keys this process has."""


class SecretBox:
    """Seals and opens a job's secret_env; keys are read on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    def seal(self, values: Mapping[str, str]) -> str:
        return self._keys().encrypt(json.dumps(dict(values)).encode()).decode()

    def open(self, sealed: str) -> dict[str, str]:
        try:
            data = json.loads(self._keys().decrypt(sealed.encode()))
        except InvalidToken:
            raise SecretsUnreadable(
                "the job's secret_env cannot be decrypted with this worker's keys"
                " (HODEI_SECRET_KEY / HODEI_SECRET_KEYS)"
            ) from None
        return {str(k): str(v) for k, v in data.items()}

    def _keys(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = MultiFernet([_fernet(k) for k in self._key_list()])
            return self._fernet

    def _key_list(self) -> list[str]:
        primary = self._settings.secret_key.strip()
        older = [k.strip() for k in self._settings.secret_keys.split(",") if k.strip()]
        if primary:
            return [primary, *older]
        try:
            return [_key_file(self._settings.make_home() / KEY_FILE), *older]
        except InvalidConfiguration as exc:
            # Say what it was for: HODEI_HOME may be needed by nothing else here.
            raise InvalidConfiguration(
                f"secret_env cannot be encrypted: HODEI_SECRET_KEY is not set and {exc.message}"
            ) from None


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        # Never the key itself in the message.
        raise InvalidConfiguration(
            "HODEI_SECRET_KEY and HODEI_SECRET_KEYS must be Fernet keys (32 url-safe"
            " base64-encoded bytes: see docs/operations.md, 'Secret job variables')"
        ) from None


def _key_file(path: Path) -> str:
    """The key in ``path``, made (0600, owner only) if there is none yet. Written aside
    and linked into place, so a process that reads it never sees it half written."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(Fernet.generate_key().decode() + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise InvalidConfiguration(
                f"the secret key file {path} cannot be created: {exc.strerror or exc}"
            ) from None
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidConfiguration(f"the secret key file {path} cannot be read: {reason}") from None
