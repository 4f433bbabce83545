"""Settings come from HODEI_* only, with the embedded default and masked secrets."""

from pathlib import Path

import pytest

from hodei.errors import InvalidConfiguration
from hodei.settings import Settings


def test_the_embedded_default_lives_in_hodei_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"HODEI_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/hodei.sqlite"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.sqlite"
    assert settings.is_embedded


def test_passwords_never_show_in_repr_or_public_dict() -> None:
    settings = Settings.from_env(
        {
            "HODEI_DATABASE_URL": "postgresql://hodei:s3cret@db/hodei",
            "HODEI_BROKER_URL": "redis://:p4ss@redis:6379/0",
            "HODEI_FLOWER_BASIC_AUTH": "admin:pw",
        }
    )
    text = repr(settings) + str(settings.public_dict())
    for secret in ("s3cret", "p4ss", "admin:pw"):
        assert secret not in text
    assert "postgresql://hodei:***@db/hodei" in text


def test_numbers_are_parsed_and_bad_ones_named() -> None:
    assert Settings.from_env({"HODEI_HEARTBEAT_INTERVAL": "2.5"}).heartbeat_interval_s == 2.5
    with pytest.raises(InvalidConfiguration, match="HODEI_RETENTION_DAYS must be a number"):
        Settings.from_env({"HODEI_RETENTION_DAYS": "thirty"})


def test_log_format_and_level_are_checked() -> None:
    assert Settings.from_env({"HODEI_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(InvalidConfiguration, match="HODEI_LOG_FORMAT must be text or json"):
        Settings.from_env({"HODEI_LOG_FORMAT": "xml"})


def test_output_limits_are_zero_for_none_and_never_negative() -> None:
    default = Settings.from_env({})
    assert (default.max_log_bytes, default.max_log_lines) == (64 * 1024 * 1024, 0)
    assert Settings.from_env({"HODEI_MAX_LOG_LINES": "0"}).max_log_lines == 0
    for name in ("HODEI_MAX_LOG_LINES", "HODEI_MAX_LOG_BYTES"):
        with pytest.raises(
            InvalidConfiguration, match=f"^{name} must be 0 .no limit. or more, not -1$"
        ):
            Settings.from_env({name: "-1"})


def test_child_environment_reproduces_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"HODEI_HOME": str(tmp_path), "HODEI_WORKER_STALE_AFTER": "7"})
    assert Settings.from_env(settings.child_environment()) == settings


def test_the_default_home_is_the_per_user_data_directory(tmp_path: Path) -> None:
    assert Settings.from_env({}).home == Path.home() / ".local/share/hodei"
    xdg = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert xdg.home == tmp_path / "hodei"
    assert xdg.database_url == f"sqlite:///{tmp_path}/hodei/hodei.sqlite"
    # A relative XDG_DATA_HOME is invalid by the spec, and a relative HODEI_HOME is
    # made absolute, so every process of a run names the same files.
    assert Settings.from_env({"XDG_DATA_HOME": "rel"}).home.is_absolute()
    assert Settings.from_env({"HODEI_HOME": "rel"}).home == Path.cwd() / "rel"


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_durations_must_be_finite_and_not_negative(value: str) -> None:
    with pytest.raises(InvalidConfiguration, match="HODEI_BROKER_WAIT must be a number of sec"):
        Settings.from_env({"HODEI_BROKER_WAIT": value})
    with pytest.raises(InvalidConfiguration, match="HODEI_HEARTBEAT_INTERVAL must be a number"):
        Settings.from_env({"HODEI_HEARTBEAT_INTERVAL": value})


def test_the_serve_port_must_be_a_port() -> None:
    with pytest.raises(InvalidConfiguration, match=r"HODEI_SERVE_PORT must be a port number"):
        Settings.from_env({"HODEI_SERVE_PORT": "99999"})
