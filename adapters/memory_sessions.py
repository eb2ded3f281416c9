"""An in-memory fake of the :class:`SessionStore` port; same contract as the Postgres one.

Its clock stands for the database's clock. No method awaits midway, so each is atomic
within one event loop.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.clock import SystemClock
from domain.ports import Clock, SessionStore


class InMemorySessionStore(SessionStore):
    """Sessions in a dict: key -> (token digest, expiry)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.rows: dict[bytes, tuple[bytes, datetime]] = {}

    async def create(self, key: bytes, token: bytes, ttl: float) -> None:
        """Record a session living ``ttl`` seconds; drop the expired ones."""
        await self.purge_expired()
        self.rows[key] = (token, self.clock.now() + timedelta(seconds=ttl))

    async def token_of(self, key: bytes) -> bytes | None:
        """The token digest of a live session, else None."""
        row = self.rows.get(key)
        if row is None or row[1] <= self.clock.now():
            return None
        return row[0]

    async def delete(self, key: bytes) -> bool:
        """End the session; whether there was one."""
        return self.rows.pop(key, None) is not None

    async def purge_expired(self) -> int:
        """Remove sessions whose time is up; how many."""
        now = self.clock.now()
        expired = [key for key, (_, until) in self.rows.items() if until <= now]
        for key in expired:
            del self.rows[key]
        return len(expired)
