"""Durations and sizes as people write them in ``runwarden.toml``: ``1h30m``, ``100MB``.

Pure parsing, no I/O. Both functions raise :class:`ValueError` with a message that says
what was wrong and shows a valid example, ready to be shown to a user as is.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}

# One or more "<number><unit>" parts, e.g. "1h30m" or "1h 30m"; "ms" must be tried before
# "m" so "300ms" is not read as 300 minutes followed by garbage.
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")

# Beyond this, date arithmetic overflows; nothing a scheduler does needs more.
MAX_DURATION = 100 * 365.25 * 86400.0
"""The longest duration accepted, in seconds: 100 years."""

DURATION_EXAMPLE = '"300ms", "5s", "1h30m", "7d" or "2w"'

# Decimal (SI) multiples for kb/mb/gb/tb, binary ones for kib/mib/gib/tib: "100MB" is
# 100,000,000 bytes, "1MiB" is 1,048,576 bytes, as disks and the IEC define them.
_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)

SIZE_EXAMPLE = '"512kb", "100MB", "1.5gb" or "64MiB"'


def parse_duration(text: str | float) -> float:
    """Return the number of seconds ``text`` stands for.

    Accepts unit parts ``ms``, ``s``, ``m``, ``h``, ``d`` (24 h) and ``w`` (7 d), combined
    as in ``1h30m`` (case-insensitive, spaces allowed between parts); a bare number, as a
    string or as a number, is seconds. Negative, infinite and over-:data:`MAX_DURATION`
    values are refused.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as {DURATION_EXAMPLE}, got {text!r}")
    if isinstance(text, int | float) or _BARE_NUMBER.fullmatch(text):
        seconds = float(text)
    else:
        seconds = _parse_duration_parts(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {text!r}; use e.g. {DURATION_EXAMPLE}")
    if seconds > MAX_DURATION:
        raise ValueError(f"the duration {text!r} is longer than 100 years")
    return seconds


def _parse_duration_parts(text: str) -> float:
    seconds = 0.0
    position = 0
    seen: set[str] = set()
    stripped = text.rstrip()
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}; write it like {DURATION_EXAMPLE}")
        unit = match.group(2).lower()
        if unit in seen:
            raise ValueError(f"invalid duration {text!r}: the unit {unit!r} appears twice")
        seen.add(unit)
        seconds += float(match.group(1)) * _DURATION_UNITS[unit]
        position = match.end()
    if not seen:
        raise ValueError(f"invalid duration {text!r}; write it like {DURATION_EXAMPLE}")
    return seconds


def parse_size(text: str | int) -> int:
    """Return the number of bytes ``text`` stands for.

    Units (case-insensitive): ``b``; ``kb``, ``mb``, ``gb``, ``tb`` are powers of 1000;
    ``kib``, ``mib``, ``gib``, ``tib`` are powers of 1024. A bare number is bytes.
    Fractions round to the nearest byte (``1.5kb`` is 1500).
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as {SIZE_EXAMPLE}, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative; use e.g. {SIZE_EXAMPLE}")
        return text
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}; write it like {SIZE_EXAMPLE}")
    unit = match.group(2).lower() or "b"
    if unit not in _SIZE_UNITS:
        allowed = ", ".join(_SIZE_UNITS)
        raise ValueError(f"invalid size {text!r}: unknown unit {match.group(2)!r} (use {allowed})")
    return round(float(match.group(1)) * _SIZE_UNITS[unit])
