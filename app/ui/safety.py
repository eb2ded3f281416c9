"""Where the dashboard may send a browser after a form: only paths of this origin."""

from __future__ import annotations

from urllib.parse import urlsplit


def same_origin_path(target: str, root: str = "", default: str = "/ui/") -> str:
    """``target`` as a path under ``root`` if it is one of ours, else ``default``.

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read ``/\\host``
    as ``//host``), control characters, and paths outside the dashboard's root path. The
    answer is relative to ``root`` (the caller adds it back).
    """
    if not target or any(ord(c) < 0x20 or c == "\\" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if root:
        if target != root and not target.startswith(root + "/"):
            return default
        target = target[len(root) :] or "/"
    return target if target.startswith("/") and not target.startswith("//") else default
