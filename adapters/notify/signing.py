"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256, stdlib."""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The key of ``secret``: after a ``whsec_`` prefix base64 of the key, else the
    secret's UTF-8 bytes."""
    if secret.startswith(PREFIX):
        return base64.b64decode(secret.removeprefix(PREFIX))
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` + base64 of HMAC-SHA256 over
    ``"{id}.{timestamp}.{body}"``."""
    payload = body.encode("utf-8") if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
