"""Dashboard login sessions: opened with an API token, kept server-side, shared by every node.

A session id is 32 random bytes, sent to the browser once in the ``runwarden_session``
cookie (unpadded URL-safe base64) and never logged. The store holds only its SHA-256 digest
and the digest of the token that opened it: a session is refused as soon as that token is no
longer accepted (a config reload or a restart without it). The session's CSRF token is
derived from the id (SHA-256 of a prefix and the id), so it cannot be computed from what
the database holds.

:class:`SessionGate` is built with the app (the security middleware needs it) but gets its
store in the lifespan, once the database engine exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Callable

from app.auth_limit import FailureLimiter
from app.browser_auth import SESSION_COOKIE
from app.security import SessionCheck
from app.tokens import LiveTokens, TokenSet
from domain.ports import SessionStore

SESSION_TTL = 86400
"""Seconds a session lives (and the cookie's ``Max-Age``): 24 hours."""
CACHE_SECONDS = 2.0
"""How long a node trusts a session it looked up, before asking the database again.

Bounds how late another node's logout takes effect here; this node's own logout drops its
entry at once."""
CACHE_ENTRIES = 1024
ID_BYTES = 32
_CSRF_PREFIX = b"runwarden-csrf\x00"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_id(session_id: str) -> bytes | None:
    """The 32 bytes of a cookie value, or None if it cannot be one of our ids."""
    if len(session_id) != 43:  # 32 bytes in unpadded base64
        return None
    try:
        raw = base64.urlsafe_b64decode(session_id + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == ID_BYTES else None


def session_key(raw_id: bytes) -> bytes:
    """What the store knows a session by: the SHA-256 digest of its id."""
    return hashlib.sha256(raw_id).digest()


def csrf_token_of(raw_id: bytes) -> str:
    """The session's CSRF token: not derivable from :func:`session_key`."""
    return _b64(hashlib.sha256(_CSRF_PREFIX + raw_id).digest())


def cookie_header(session_id: str, *, secure: bool, max_age: int = SESSION_TTL) -> str:
    """The ``Set-Cookie`` value for the session cookie (``max_age=0`` clears it)."""
    header = f"{SESSION_COOKIE}={session_id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return header + "; Secure" if secure else header


class SessionGate(SessionCheck):
    """Opens, checks and ends sessions; the failure limiter is the middleware's own."""

    def __init__(
        self,
        tokens: LiveTokens,
        limiter: FailureLimiter,
        *,
        ttl: int = SESSION_TTL,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.live = tokens
        self.limiter = limiter
        self.ttl = ttl
        self.store: SessionStore | None = None
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._random_bytes = random_bytes
        self._cache: dict[bytes, tuple[bytes, float]] = {}

    def attach(self, store: SessionStore) -> None:
        """Use ``store`` (in the lifespan: the engine does not exist before)."""
        self.store = store

    def tokens(self) -> TokenSet:
        """The tokens accepted now."""
        return self.live.current()

    async def open(self, token: str) -> str | None:
        """A new session's id (the cookie's value) if ``token`` is accepted, else None."""
        digest = self.tokens().digest_of(token)
        if digest is None or self.store is None:
            return None
        raw = self._random_bytes(ID_BYTES)
        await self.store.create(session_key(raw), digest, self.ttl)
        return _b64(raw)

    async def csrf_token(self, session_id: str) -> str | None:
        """The CSRF token of a live session of an accepted token; None for any other id."""
        raw = decode_id(session_id)
        if raw is None or self.store is None:
            return None
        key = session_key(raw)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            digest: bytes | None = cached[0]
        else:
            digest = await self.store.token_of(key)
            if digest is None:
                self._cache.pop(key, None)
            else:
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()  # crude but bounded; entries live seconds anyway
                self._cache[key] = (digest, now + self._cache_seconds)
        # The token check is never cached: a reload that drops the token ends it at once.
        if digest is None or not self.tokens().has_digest(digest):
            return None
        return csrf_token_of(raw)

    async def close(self, session_id: str) -> None:
        """End the session everywhere (this node at once, others within the cache time)."""
        raw = decode_id(session_id)
        if raw is None or self.store is None:
            return
        key = session_key(raw)
        self._cache.pop(key, None)
        await self.store.delete(key)
