"""The auth-failure limit: how many wrong credentials one client may present in a window.

It never stands between a valid credential and the API (see :mod:`app.security`): with
256-bit tokens it protects nothing against guessing. What it does is tell a client that keeps
presenting a wrong token (a forgotten script, a stale config) to back off, with 429 and
``Retry-After``, and keep the log from filling with its failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from app.config import positive_from_env

MAX_FAILURES_ENV = "RUNWARDEN_AUTH_MAX_FAILURES"
DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW = 60.0
DEFAULT_MAX_CLIENTS = 10_000


class _Window:
    """One client's failures since ``start``."""

    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 1


class FailureLimiter:
    """Counts auth failures per client in fixed windows that open at a client's first failure.

    A client with ``max_failures`` failures in its window is limited until the window ends;
    then its count is gone. Memory is bounded: one small record per client that failed
    within the last ``window`` seconds, and at most ``max_clients`` of them (when full, the
    client whose window ends soonest is dropped first).
    """

    def __init__(
        self,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window: float = DEFAULT_WINDOW,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        # Insertion order is window start order (a window is never moved): the first
        # entries are the first to expire.
        self._windows: dict[str, _Window] = {}

    @classmethod
    def from_env(cls) -> FailureLimiter:
        """The daemon's limiter: ``RUNWARDEN_AUTH_MAX_FAILURES`` failures per minute, else 10."""
        return cls(max_failures=positive_from_env(MAX_FAILURES_ENV, DEFAULT_MAX_FAILURES))

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` is no longer limited; 0 if it is not limited now."""
        now = self._clock()
        self._expire(now)
        window = self._windows.get(client)
        if window is None or window.count < self.max_failures:
            return 0
        return max(1, math.ceil(window.start + self.window - now))

    def record_failure(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        now = self._clock()
        self._expire(now)
        window = self._windows.get(client)
        if window is not None:
            window.count = min(window.count + 1, self.max_failures)
            return
        self._windows[client] = _Window(now)
        if len(self._windows) > self.max_clients:
            del self._windows[next(iter(self._windows))]

    def _expire(self, now: float) -> None:
        windows = self._windows
        while windows:
            client = next(iter(windows))
            if windows[client].start > now - self.window:
                return
            del windows[client]
