"""Where a URL's credentials end, as the library that reads it sees them: hiding them
(``mask_url``) and refusing those a parser would misread (``check_url``). Pure string
functions (stdlib only), so settings, logging and the services can all use them."""

from __future__ import annotations

import re

from hodei.errors import InvalidConfiguration

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.I)
# kombu takes ``url1;url2`` as failover brokers: each URL has credentials of its own. A
# ';' not followed by a scheme stays inside its URL (a database password may hold one).
_NEXT_URL = re.compile(r";(?=[a-z][a-z0-9+.-]*://)", re.I)
# A URL inside other text ends at whitespace.
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.I)
# SQLAlchemy's make_url: a user name holds no ':' or '/', the password runs to the FIRST
# '@' (it may hold '/', '?', '#'), and the host runs to '/', ':' or '?' (so an '@' in
# the password makes the host ``rest@host``). kombu's sqla+ transport hands it the URL.
_SQLA_CREDENTIALS = re.compile(r"[^:/]*(?::[^@]*)?@")
_SQLA_SCHEMES = frozenset(
    {"postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql", "sqla"}
)
# A user name shown beside a masked password: nothing a password could spill into.
_PLAIN_USER = re.compile(r"[^@/?#:\s]*")


def _is_database(scheme: str) -> bool:
    return scheme.lower().split("+")[0].split(":")[0] in _SQLA_SCHEMES


def _credentials_end(rest: str, database: bool) -> int:
    """The index in ``rest`` (a URL after ``://``) of the '@' that ends its credentials,
    or -1 when it has none. An '@' the owner left unencoded in a password counts as the
    password's: the credentials end at the last '@' before the host."""
    if rest.startswith("/"):
        return -1  # a path at once (sqlite:////home/ann@corp/x): no host, no credentials
    if database:
        first = _SQLA_CREDENTIALS.match(rest)
        if first is None:
            return -1
        at = first.end() - 1
        host = re.split(r"[/?]", rest[at + 1 :], maxsplit=1)[0]
        return at + 1 + host.rfind("@") if "@" in host else at
    # urllib, kombu, redis, httpx: the authority ends at the first '/', '?' or '#', and
    # its credentials at its last '@'.
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return authority.rfind("@")
    # No '@' there, but ``user:...@``: a password with an unencoded '/', '?' or '#'
    # (``u:pa/ss@host``), which urllib would read as host ``u``, port ``pa``. Taken as
    # credentials (hidden, refused): ``host:port/path@x`` looks the same, and showing it
    # masked costs less than showing a password.
    first = _SQLA_CREDENTIALS.match(rest)
    if first is None or ":" not in first.group():
        return -1
    return first.end() - 1


def _masked_userinfo(userinfo: str) -> str:
    user, colon, _password = userinfo.partition(":")
    if not _PLAIN_USER.fullmatch(user):
        return "***"  # not a plain user name: it may hold part of a password
    return f"{user}:***" if colon else user


def _mask_one(url: str) -> str:
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    rest = url[scheme.end() :]
    end = _credentials_end(rest, _is_database(scheme.group()[:-3]))
    if end < 0:
        return url
    return f"{scheme.group()}{_masked_userinfo(rest[:end])}{rest[end:]}"


def mask_url(url: str) -> str:
    """Hide the credentials of a URL (``postgresql://u:***@host/db``), of each URL of a
    kombu failover list (``url1;url2``), or of every URL in a line of text.

    A password with an unescaped ``@`` (``u:pa@ss@host``) is hidden whole, not cut at
    its first ``@``; an ``@`` in a path or query string is no credentials'.
    """
    if _SCHEME.match(url) is not None and not any(c in url for c in "\r\n"):
        return ";".join(_mask_one(one) for one in _NEXT_URL.split(url))
    return _URL_IN_TEXT.sub(
        lambda m: ";".join(_mask_one(one) for one in _NEXT_URL.split(m.group())), url
    )


def _check_ports(setting: str, url: str, host: str) -> None:
    """A port that is not a number made every parser raise a bare ValueError (an internal
    error, exit 70) instead of naming the setting."""
    hosts = re.split(r"[/?#]", host, maxsplit=1)[0]
    for one in hosts.split(","):  # libpq's host1:port1,host2:port2
        port = one.rpartition("]")[2] if one.startswith("[") else one
        _name, colon, port = port.rpartition(":") if ":" in port else ("", "", "")
        if colon and not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise InvalidConfiguration(
                f"{setting} {mask_url(url)!r}: the port {port!r} is not a port number (0..65535)"
            )


# What each URL setting's parser splits on: SQLAlchemy takes a password up to its first
# '@' (so a second one moves the rest of the password into the host); kombu, redis and
# httpx (urllib's rules) end the host part at the first '/', '?' or '#' too, so those
# in a password name a wrong host or port, and the driver's error then shows part of
# the password. Whitespace ends a URL in any line of text, and with it the masking.
_PERCENT = {"@": "%40", "/": "%2F", "?": "%3F", "#": "%23", " ": "%20", "\t": "%09"}
URL_SPECIALS_DATABASE = "@"
URL_SPECIALS = "@/?#"


def check_url(setting: str, url: str, specials: str = URL_SPECIALS) -> None:
    """Refuse a URL whose user name or password holds a character its parser would take
    for the end of the credentials (it would be read as part of the host or port, and
    shown in errors, logs and ``hodei status`` as such) or whitespace (text masking
    would stop there). Each URL of a kombu failover list on its own. One line, with the
    fix."""
    database = specials == URL_SPECIALS_DATABASE
    for one in _NEXT_URL.split(url):
        scheme = _SCHEME.match(one)
        if scheme is None:
            continue
        rest = one[scheme.end() :]
        end = _credentials_end(rest, database)
        _check_ports(setting, url, rest[end + 1 :])
        if end < 0:
            continue
        user, _colon, password = rest[:end].partition(":")
        for part, name in ((user, "user name"), (password, "password")):
            for char in [*specials, *(c for c in part if c.isspace())]:
                if char in part:
                    encoded = _PERCENT.get(char, f"%{ord(char):02X}")
                    raise InvalidConfiguration(
                        f"{setting} {mask_url(url)!r}: its {name} contains {char!r};"
                        f" percent-encode it as {encoded} (and '%' as %25)"
                    )
