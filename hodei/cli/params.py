"""Option types whose bad values are refused by click with a one-line usage error
(exit 2), before hodei sees them: finite numbers, and ids that fit 64 bits."""

from __future__ import annotations

import math
from typing import Any

import click

MAX_ID = 2**63 - 1
"""The largest id or count the databases' 64-bit integers hold."""


class FiniteFloat(click.FloatRange):
    """A float in a range; unlike click.FloatRange, ``nan`` and ``inf`` are refused."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

    def _describe_range(self) -> str:
        # click writes an unbounded range as `x<=None` in the help; say nothing instead.
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()


class IdRange(click.IntRange):
    """click.IntRange up to MAX_ID, whose help and errors read ``x>=0`` rather than
    ``0<=x<=9223372036854775807``: the top is the storage's, not a limit to aim at."""

    def _describe_range(self) -> str:
        return f"x>={self.min}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        if number > MAX_ID:
            self.fail(f"{number} is too large (at most {MAX_ID}).", param, ctx)
        return super().convert(number, param, ctx)


def id_range(low: int = 1) -> click.IntRange:
    """A whole number from ``low`` to the largest 64-bit id."""
    return IdRange(low, MAX_ID)
