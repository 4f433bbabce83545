"""Checks every piece of user input passes before hodei stores it or sends it to a
database: text that PostgreSQL, JSON and a process's argv can all carry unchanged,
and numbers that are finite and in range. Each returns a short reason or ``None``."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from numbers import Integral, Real
from typing import cast

# C0 controls, DEL and C1 controls: fine inside a command or an env value, but not in
# a name or label that is printed in a table on one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored and passed to a process as it is, or ``None``.

    A NUL byte ends a C string (argv, environ) and PostgreSQL text cannot hold it; a
    lone surrogate (what Python makes of bytes that were not UTF-8) cannot be encoded.
    """
    if "\x00" in value:
        return "must not contain NUL bytes"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid UTF-8 text (it has a lone surrogate)"
    return None


def label_problem(value: str) -> str | None:
    """:func:`text_problem`, and no control characters (one printable line)."""
    if _CONTROL.search(value):
        return "must not contain control characters" if "\x00" not in value else text_problem(value)
    return text_problem(value)


def utf8_size(value: str) -> int:
    """Bytes ``value`` takes in UTF-8 (a lone surrogate counted as three)."""
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


MAX_SPAN = timedelta(days=100 * 365)
"""The furthest a time a user gives may be from now, either way (a job's run_at, a
delay), as the CLI's durations: past it the time is a mistake, and near year 1 or 9999
it may not exist in UTC, where every time is stored."""


def utc_time(value: datetime) -> datetime | None:
    """``value`` (aware) in UTC, or ``None`` if that is before year 1 or after 9999."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


_TOO_LARGE = "a number too large"


def quoted(value: object, limit: int = 40) -> str:
    """``repr(value)``, shortened: error messages stay one short line."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return _TOO_LARGE
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number_problem(
    value: object, low: float, high: float, *, whole: bool = False, unit: str = ""
) -> str | None:
    """Why ``value`` is not a finite real number (a whole one if ``whole``) in
    ``low..high``, or ``None``. Booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, Real):
        kind = "a whole number" if whole else "a number"
        return f"must be {kind}, got {type(value).__name__}"
    if not isinstance(value, Integral) and not _finite(value):
        return f"must be a finite number, got {quoted(value)}"
    number = cast(float, value)  # a Real: ints, floats, fractions, numpy scalars
    if not low <= number <= high:
        if isinstance(value, Integral):
            shown = quoted(value)
            shown += "" if shown == _TOO_LARGE else unit
        else:
            shown = _bound(number, unit)
        return f"must be {_range(low, high, unit, above=number > high)}, got {shown}"
    if whole and number != int(number):
        return f"must be a whole number, got {quoted(value)}"
    return None


# A bound this far out is the storage's (a 64-bit id, no limit at all), not one a
# caller chose: "0 or more" reads better than "between 0 and 9.22337e+18".
_NO_BOUND = 2.0**53


def _bound(value: float, unit: str) -> str:
    """A number as written: ``31536000``, ``0.5``, not ``3.1536e+07``; ``1e+300`` stays."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < _NO_BOUND):
        return f"{int(value)}{unit}"
    return f"{float(value):g}{unit}"


def _range(low: float, high: float, unit: str, *, above: bool) -> str:
    """How ``low..high`` reads in an error. Past a bound only the storage sets, that bound
    is told exactly: a number that large is a mistake, not a near miss."""
    if high >= _NO_BOUND and low > -_NO_BOUND:
        return f"at most {_bound(high, unit)}" if above else f"{_bound(low, unit)} or more"
    if low <= -_NO_BOUND and high < _NO_BOUND:
        return f"{_bound(high, unit)} or less" if above else f"at least {_bound(low, unit)}"
    return f"between {_bound(low, unit)} and {_bound(high, unit)}"


def _finite(value: Real) -> bool:
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError):
        return False
