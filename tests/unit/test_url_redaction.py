"""URL credentials are hidden whole, up to the last '@' before the host, wherever a URL is
shown; a URL whose password holds a character its parser splits on is refused up front,
by the setting's name, without showing any of the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from hodei.errors import InvalidConfiguration
from hodei.logconfig import mask_secrets
from hodei.settings import Settings, mask_url

# (URL, what of it is secret): passwords with an unescaped '@' (the first is also a
# host:port lookalike, the shape that reached int() and the resolver), ':' and '/'.
LEAKY = [
    ("postgresql://postgres:x@y:1234TOPSECRET@127.0.0.1:5432/db", ("x@y", "1234TOPSECRET")),
    ("postgresql://postgres:pa@LEAKME@127.0.0.1:5432/db", ("LEAKME",)),
    ("amqp://guest:x@y:99LEAK@127.0.0.1:5672//", ("x@y", "99LEAK")),
    ("redis://:s3@cr3t@127.0.0.1:6379/0", ("s3", "cr3t")),
    ("http://admin:pa/ss@127.0.0.1:8000", ("pa/ss",)),
    ("postgresql://pa@LEAKME@127.0.0.1/db", ("pa", "LEAKME")),  # no ':': all of it hidden
]


@pytest.mark.parametrize(("url", "secrets"), LEAKY, ids=[u for u, _ in LEAKY])
def test_credentials_are_hidden_up_to_the_last_at(url: str, secrets: tuple[str, ...]) -> None:
    host = url.rpartition("@")[2]
    for shown in (mask_url(url), mask_secrets(f"connecting to {url!r} failed"), mask_secrets(url)):
        for secret in secrets:
            assert secret not in shown, shown
        assert "***@" + host in shown, shown


def test_what_is_not_a_password_is_left_alone() -> None:
    for url in (
        "postgresql://hodei@db/hodei",
        "redis://127.0.0.1:6379/0",
        "sqlite:////home/ann@corp/hodei/hodei.sqlite",  # an '@' in a path, no credentials
        "sqla+sqlite:////home/ann@corp/hodei/broker.sqlite",
    ):
        assert mask_url(url) == url
        assert mask_secrets(f"at {url} now") == f"at {url} now"
    assert mask_url("postgresql://hodei:pw@db/hodei") == "postgresql://hodei:***@db/hodei"
    # A setting's value is one URL: a space in its password is the password's too.
    assert mask_url("postgresql://hodei:a b@c@db/hodei") == "postgresql://hodei:***@db/hodei"
    # Several URLs in one line of text: each masked on its own.
    line = "db postgresql://u:p1@db/x broker amqp://g:p2@mq//"
    assert mask_secrets(line) == "db postgresql://u:***@db/x broker amqp://g:***@mq//"


@pytest.mark.parametrize(
    ("variable", "url", "char"),
    [
        ("HODEI_DATABASE_URL", "postgresql://postgres:x@y:1234TOPSECRET@127.0.0.1:5432/db", "@"),
        ("HODEI_DATABASE_URL", "postgresql://postgres:pa@LEAKME@127.0.0.1:5432/db", "@"),
        ("HODEI_BROKER_URL", "amqp://guest:x@y:99LEAK@127.0.0.1:5672//", "@"),
        ("HODEI_BROKER_URL", "amqp://guest:99/LEAK@127.0.0.1:5672//", "/"),
        ("HODEI_BROKER_URL", "redis://:9?LEAK@127.0.0.1:6379/0", "?"),
        ("HODEI_WORKER_API_URL", "http://u:9#LEAK@127.0.0.1:8000", "#"),
    ],
)
def test_a_url_its_parser_would_misread_is_refused_without_its_password(
    variable: str, url: str, char: str
) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        Settings.from_env({variable: url})
    message = str(caught.value)
    assert variable in message and repr(char) in message and "percent-encode" in message
    assert "LEAK" not in message and "TOPSECRET" not in message, message
    assert "\n" not in message


def test_urls_hodei_reads_as_they_are_still_accepted(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "HODEI_HOME": str(tmp_path / "ann@corp"),  # an '@' in the default SQLite paths
            "HODEI_BROKER_URL": "amqp://guest:pa%40ss@127.0.0.1:5672//",
            "HODEI_WORKER_API_URL": "http://127.0.0.1:8000",
        }
    )
    assert settings.broker_url.endswith("pa%40ss@127.0.0.1:5672//")
    # SQLAlchemy reads a '/' or '?' in a database password as the password's own.
    url = "postgresql://hodei:a/b?c@db/hodei"
    assert Settings.from_env({"HODEI_DATABASE_URL": url}).database_url == url
    assert "a/b" not in repr(Settings.from_env({"HODEI_DATABASE_URL": url}))


@pytest.mark.parametrize(
    ("variable", "url", "port"),
    [
        ("HODEI_DATABASE_URL", "postgresql://hodei:pw@db:54x2/hodei", "54x2"),
        ("HODEI_DATABASE_URL", "postgresql://hodei:pw@db:/hodei", ""),
        ("HODEI_BROKER_URL", "redis://:pw@redis:63 79/0", "63 79"),
        ("HODEI_BROKER_URL", "amqp://guest:pw@mq:99999//", "99999"),
        ("HODEI_WORKER_API_URL", "http://[::1]:80a0", "80a0"),
    ],
)
def test_a_port_that_is_not_a_number_is_named(variable: str, url: str, port: str) -> None:
    # Each parser raised a bare ValueError ("Port could not be cast to integer value"),
    # which the CLI could only call an internal error (exit 70).
    with pytest.raises(InvalidConfiguration) as caught:
        Settings.from_env({variable: url})
    assert str(caught.value).endswith(f"the port {port!r} is not a port number (0..65535)")
    assert variable in str(caught.value) and "pw" not in str(caught.value)


def test_ports_and_hosts_hodei_reads_are_accepted() -> None:
    for url in (
        "postgresql://hodei:pw@[::1]:5432/hodei",
        "postgresql://hodei@db1:5432,db2:5433/hodei",
        "postgresql://hodei@db/hodei?host=/var/run/postgresql",
        "postgresql:///hodei?host=/var/run/postgresql",
    ):
        assert Settings.from_env({"HODEI_DATABASE_URL": url}).database_url == url


# An '@' after the host (a path in the query string) or a second URL (kombu's failover
# list) is no part of the credentials: the URL is accepted and shown with its own host.
AT_AFTER_HOST = [
    (
        "HODEI_DATABASE_URL",
        "postgresql://u:pw@db/x?sslrootcert=/home/ann@corp/ca.pem",
        "postgresql://u:***@db/x?sslrootcert=/home/ann@corp/ca.pem",
    ),
    (
        "HODEI_BROKER_URL",
        "amqp://g:pw@mq1//;amqp://g:pw@mq2//",
        "amqp://g:***@mq1//;amqp://g:***@mq2//",
    ),
    (
        "HODEI_BROKER_URL",
        "redis://:pw@redis:6379/0?ssl_ca_certs=/home/ann@corp/ca.pem",
        "redis://:***@redis:6379/0?ssl_ca_certs=/home/ann@corp/ca.pem",
    ),
]


@pytest.mark.parametrize(("variable", "url", "masked"), AT_AFTER_HOST)
def test_an_at_after_the_host_is_no_credentials(variable: str, url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_secrets(f"connecting to {url} failed") == f"connecting to {masked} failed"
    settings = Settings.from_env({variable: url})
    assert getattr(settings, variable.removeprefix("HODEI_").lower()) == url
    assert "pw" not in repr(settings)


def test_the_database_host_shown_is_the_one_sqlalchemy_reads() -> None:
    from sqlalchemy.engine import make_url

    url = AT_AFTER_HOST[0][1]
    assert make_url(url).host == "db"
    assert "@db/x?" in mask_url(url)


def test_each_failover_broker_url_is_checked() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        Settings.from_env({"HODEI_BROKER_URL": "amqp://g:pw@mq1//;amqp://g:x@LEAK@mq2//"})
    assert "'@'" in str(caught.value) and "LEAK" not in str(caught.value)
    assert mask_url("amqp://g:a@LEAK@mq1//;amqp://g:b@LEAK@mq2//") == (
        "amqp://g:***@mq1//;amqp://g:***@mq2//"
    )


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("HODEI_DATABASE_URL", "postgresql://u:p LEAK@db/x"),
        ("HODEI_BROKER_URL", "amqp://guest:p\tLEAK@127.0.0.1:5672//"),
        ("HODEI_WORKER_API_URL", "http://ad min:pw@127.0.0.1:8000"),
    ],
)
def test_whitespace_in_credentials_is_refused(variable: str, url: str) -> None:
    # Text masking ends a URL at whitespace: "connecting to postgresql://u:p LEAK@db/x"
    # showed the password. No such URL is used, so none is ever logged.
    with pytest.raises(InvalidConfiguration) as caught:
        Settings.from_env({variable: url})
    message = str(caught.value)
    assert variable in message and "percent-encode" in message and "%" in message
    assert "LEAK" not in message and "\n" not in message
