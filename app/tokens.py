"""API tokens: how they are made, stored (SHA-256 digests only), resolved and reloaded.

Re-exported by :mod:`app.security`, whose middleware checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence

_HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")

TOKEN_PREFIX = "rw_"
TOKEN_BYTES = 32


def new_token(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A new API token: ``rw_`` then 256 random bits in unpadded URL-safe base64.

    The prefix keeps it from starting with ``-``, which command-line parsers read as an
    option (``--token -H99OD...``), and lets secret scanners recognise it.
    """
    encoded = base64.urlsafe_b64encode(random_bytes(TOKEN_BYTES)).rstrip(b"=")
    return TOKEN_PREFIX + encoded.decode("ascii")


def hash_token(token: str) -> str:
    """The ``sha256:<hex>`` line that stores ``token`` in ``[api] tokens``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def is_hashed_token(entry: str) -> bool:
    """Whether a config entry is a stored hash (as :func:`hash_token` prints) and not a token."""
    return _HASHED.match(entry) is not None


class TokenSet:
    """The accepted tokens, kept only as SHA-256 digests.

    Those from ``[api] tokens`` (``configured``) are kept apart from the others (the
    environment's, a generated one) so that a config reload can replace just them.
    """

    def __init__(self, digests: Iterable[bytes] = (), configured: Iterable[bytes] = ()) -> None:
        self._fixed = tuple(digests)
        self._configured = tuple(configured)
        self._digests = self._fixed + self._configured

    @classmethod
    def build(cls, plain: Iterable[str] = (), hashed: Iterable[str] = ()) -> TokenSet:
        """From plain tokens (environment) and ``sha256:<hex>`` entries (config file)."""
        digests = [hashlib.sha256(token.encode()).digest() for token in plain]
        return cls(digests, _hashed_digests(hashed))

    def with_configured(self, hashed: Iterable[str]) -> TokenSet:
        """These tokens with the ``[api] tokens`` part replaced by ``hashed``."""
        return TokenSet(self._fixed, _hashed_digests(hashed))

    def __len__(self) -> int:
        return len(self._digests)

    def matches(self, token: str) -> bool:
        """Whether ``token`` is one of ours, in time that depends only on how many there are."""
        return self.digest_of(token) is not None

    def digest_of(self, token: str) -> bytes | None:
        """The SHA-256 digest of ``token`` if it is one of ours (what a session records)."""
        presented = hashlib.sha256(token.encode()).digest()
        return presented if self.has_digest(presented) else None

    def has_digest(self, presented: bytes) -> bool:
        """Whether a token with this digest is accepted (every digest compared: no early exit)."""
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(digest, presented)
        return found


def _hashed_digests(hashed: Iterable[str]) -> list[bytes]:
    return [bytes.fromhex(entry.removeprefix("sha256:")) for entry in hashed]


class LiveTokens:
    """The tokens accepted now: ``[api] tokens`` follow config reloads.

    The environment's tokens and a generated one stay as they were at start (the
    environment is read once). With :meth:`follow`, each :meth:`current` looks at the
    config in force; a reload replaces the config object, so an identity check is all a
    request pays until then.
    """

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens
        self._source: Callable[[], Sequence[str]] | None = None
        self._seen: Sequence[str] | None = None

    def follow(self, configured: Callable[[], Sequence[str]]) -> None:
        """Take ``[api] tokens`` from ``configured()`` (e.g. the daemon's current config)."""
        self._source = configured

    def current(self) -> TokenSet:
        """The accepted tokens, as of the config in force."""
        if self._source is not None:
            entries = self._source()
            if entries is not self._seen:
                self._tokens = self._tokens.with_configured(entries)
                self._seen = entries
        return self._tokens


class AuthSetupError(ValueError):
    """The environment asks for something impossible (e.g. ``RUNWARDEN_AUTH=maybe``)."""


def resolve_tokens(
    config_tokens: Iterable[str], environ: Mapping[str, str]
) -> tuple[TokenSet | None, str | None]:
    """(accepted tokens or None for auth off, a token generated because none was configured)."""
    switch = environ.get("RUNWARDEN_AUTH", "on").strip().lower()
    if switch not in ("on", "off"):
        raise AuthSetupError(f"RUNWARDEN_AUTH must be on or off, not {switch!r}")
    if switch == "off":
        return None, None
    plain = [t.strip() for t in environ.get("RUNWARDEN_API_TOKENS", "").split(",") if t.strip()]
    hashed = list(config_tokens)
    if plain or hashed:
        return TokenSet.build(plain, hashed), None
    generated = new_token()
    return TokenSet.build([generated]), generated
