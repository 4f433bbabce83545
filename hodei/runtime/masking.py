"""Mask a job's secret_env values where its command prints them, as GitLab CI does.

Each stored line has every exact occurrence of a value replaced by ``[masked]``. Values
shorter than :data:`MIN_MASKED_LENGTH` are not masked (a short value would mask parts of
ordinary output). A value split across two lines, or printed encoded (base64, hex,
reversed, one character per line), is not recognised: masking keeps an accident out of
the logs, it does not stop a job that wants to reveal its secrets (docs/manual.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hodei.runtime.runner import OutputLine

MASK = "[masked]"
MIN_MASKED_LENGTH = 8


def masking(
    values: Iterable[str], write: Callable[[list[OutputLine]], None]
) -> Callable[[list[OutputLine]], None]:
    """``write``, with ``values`` masked in each line first (``write`` itself if none is
    long enough to be masked)."""
    # Longest first, so a value that contains another is masked whole.
    secrets = sorted(
        {v.encode() for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True
    )
    if not secrets:
        return write

    def mask(line: OutputLine) -> OutputLine:
        data = line.data
        if not any(secret in data for secret in secrets):
            return line
        for secret in secrets:
            data = data.replace(secret, MASK.encode())
        return OutputLine.of_bytes(line.stream, line.ts, data)

    def write_masked(batch: list[OutputLine]) -> None:
        write([mask(line) for line in batch])

    return write_masked
