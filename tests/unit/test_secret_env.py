"""secret_env: its validation, its encryption at rest (with key rotation) and its masking."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hodei.domain.specs import JobSpec
from hodei.errors import InvalidConfiguration, InvalidJobSpec
from hodei.runtime.masking import masking
from hodei.runtime.runner import OutputLine
from hodei.settings import Settings
from hodei.store.secrets import SecretBox, SecretsUnreadable


def test_secret_env_is_validated_like_env_and_never_serialized() -> None:
    spec = JobSpec.create("true", env={"A": "1"}, secret_env={"TOKEN": "hunter2-long-value"})
    assert "hunter2" not in repr(spec) and "secret_env" not in spec.to_dict()
    assert spec.summary()["secret_env_keys"] == ["TOKEN"]
    with pytest.raises(InvalidJobSpec, match="secret_env name '1BAD' is not a valid"):
        JobSpec.create("true", secret_env={"1BAD": "x"})
    with pytest.raises(InvalidJobSpec, match="A is in both env and secret_env"):
        JobSpec.create("true", env={"A": "1"}, secret_env={"A": "2"})
    with pytest.raises(InvalidJobSpec) as bad:
        JobSpec.create("true", secret_env={"T": "nul\x00value-secret"})
    assert "value-secret" not in str(bad.value)


def test_a_key_is_rotated_with_the_old_one_in_secret_keys(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = SecretBox(Settings(home=tmp_path, secret_key=old)).seal({"T": "v"})
    rotated = SecretBox(Settings(home=tmp_path, secret_key=new, secret_keys=old))
    assert rotated.open(sealed) == {"T": "v"}
    with pytest.raises(SecretsUnreadable, match="cannot be decrypted"):
        SecretBox(Settings(home=tmp_path, secret_key=new)).open(sealed)
    with pytest.raises(InvalidConfiguration) as bad:
        SecretBox(Settings(home=tmp_path, secret_key="not-a-key-abc")).seal({"T": "v"})
    assert "not-a-key-abc" not in str(bad.value)


def test_without_a_key_setting_a_0600_key_file_in_hodei_home_is_made_once(
    tmp_path: Path,
) -> None:
    first = SecretBox(Settings(home=tmp_path)).seal({"T": "v"})
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert SecretBox(Settings(home=tmp_path)).open(first) == {"T": "v"}


def test_without_any_key_to_be_had_the_error_is_one_line_naming_the_setting(
    tmp_path: Path,
) -> None:
    """No HODEI_SECRET_KEY, and no key file can be made (HODEI_HOME under a file) or read
    (a directory in its place): InvalidConfiguration (exit 2) saying so, no traceback."""
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidConfiguration) as no_home:
        SecretBox(Settings(home=tmp_path / "file" / "hodei")).seal({"T": "v"})
    assert no_home.value.message.startswith(
        "secret_env cannot be encrypted: HODEI_SECRET_KEY is not set and HODEI_HOME "
    )
    (tmp_path / "home" / "secret.key").mkdir(parents=True)
    with pytest.raises(InvalidConfiguration) as unreadable:
        SecretBox(Settings(home=tmp_path / "home")).seal({"T": "v"})
    assert unreadable.value.message == (
        "secret_env cannot be encrypted: HODEI_SECRET_KEY is not set and the secret key"
        f" file {tmp_path / 'home' / 'secret.key'} cannot be read: Is a directory"
    )
    assert "\n" not in no_home.value.message + unreadable.value.message


def _line(data: bytes) -> OutputLine:
    return OutputLine.of_bytes("stdout", datetime.now(UTC), data)


def test_masking_replaces_whole_values_of_eight_characters_or_more() -> None:
    out: list[OutputLine] = []
    write = masking(["abcdefgh", "abcdefgh-longer", "short"], out.extend)
    write([_line(b"x abcdefgh-longer y abcdefgh short\n"), _line(b"abcd\n"), _line(b"efgh\n")])
    assert [line.line for line in out] == ["x [masked] y [masked] short", "abcd", "efgh"]
    assert out[0].data == b"x [masked] y [masked] short\n"
    plain: list[OutputLine] = []
    assert masking(["short"], plain.extend) == plain.extend  # nothing to mask: no wrapper


def test_the_http_apis_serializer_leaves_secret_env_out() -> None:
    """FastAPI serializes hodei's records with pydantic, which honours the fields'
    ``exclude`` metadata: a job's secret values (or their ciphertext) are not sent."""
    import dataclasses

    from pydantic import TypeAdapter

    from hodei.domain.records import Job

    spec = JobSpec.create("true", secret_env={"TOKEN": "hunter2-long-value"})
    assert "secret_env" not in TypeAdapter(JobSpec).dump_python(spec)
    excluded = [f.name for f in dataclasses.fields(Job) if f.metadata.get("exclude")]
    assert excluded == ["secret_env_sealed"]
