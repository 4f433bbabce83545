"""`hodei flower` refuses to serve beyond localhost without basic auth (no services needed:
it checks before it connects to anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import fast_settings, run_cli


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10", "flower.example"])
def test_flower_refuses_to_listen_beyond_localhost_without_auth(
    tmp_path: Path, address: str
) -> None:
    result = run_cli(fast_settings(tmp_path / ".hodei"), "flower", "--address", address)
    assert result.returncode == 2, result.stderr
    assert "refusing to serve Flower" in result.stderr
    assert "HODEI_FLOWER_BASIC_AUTH" in result.stderr
    assert "Traceback" not in result.stderr


def test_flower_rejects_malformed_credentials(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / ".hodei", flower_basic_auth="no-colon-here")
    result = run_cli(settings, "flower", "--address", "0.0.0.0")
    assert result.returncode == 2, result.stderr
    assert "HODEI_FLOWER_BASIC_AUTH must be user:password" in result.stderr
    assert "no-colon-here" not in result.stderr  # never echo what might be a password
