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
    """A whole number from ``low`` to the largest 64-bit id; the help says ``x>=low``,
    not the 19-digit limit no one types."""

    def _describe_range(self) -> str:
        return f"x>={self.min}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        # click's message would be built from the help's `x>=1`: give the whole range.
        number = click.INT.convert(value, param, ctx)
        if not self.min <= number <= self.max:  # type: ignore[operator]
            self.fail(f"{number} is not in the range {self.min}<=x<={self.max}.", param, ctx)
        return number


def id_range(low: int = 1) -> click.IntRange:
    """A whole number from ``low`` to the largest 64-bit id."""
    return IdRange(low, MAX_ID)
