"""The real clock: the system's wall time in UTC and its monotonic counter."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from domain.ports import Clock


class SystemClock(Clock):
    """Reads the operating system's clocks."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on ``time.monotonic()``, which never goes back."""
        return time.monotonic()
