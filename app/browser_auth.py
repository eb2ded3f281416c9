"""Browser credentials at the security middleware: the session cookie, origins, CSRF tokens.

A browser on the dashboard authenticates with the ``runwarden_session`` cookie instead of a
bearer token (``EventSource`` and plain links cannot send a header). Cookies go with
requests other sites make, so a cookie-authenticated unsafe request (POST, PUT, PATCH,
DELETE) must show that it comes from our own pages: a same-origin ``Origin`` (or, without
one, ``Referer``) and the session's CSRF token, in the ``X-CSRF-Token`` header (htmx sends
it from ``hx-headers``) or, for a form posted to ``/ui/...``, in its ``csrf_token`` field.
These are pure helpers over the ASGI scope; :mod:`app.security` decides with them.
"""

from __future__ import annotations

import hmac
import html
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

SESSION_COOKIE = "runwarden_session"
"""The session cookie: ``HttpOnly; SameSite=Strict; Path=/`` (``Secure`` over https)."""
SESSION_CSRF = "runwarden.csrf"
"""Scope key of the session's CSRF token; the same key as ``app.ui.render.SESSION_CSRF``."""
CSRF_HEADER = b"x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 64 * 1024
"""A dashboard form is a few fields; a bigger urlencoded body is not read for its token."""
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_FORM = "application/x-www-form-urlencoded"

Receive = Callable[[], Awaitable[dict[str, Any]]]


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time equality of two texts, whatever characters a client sent."""
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def session_cookie(scope: Mapping[str, Any]) -> str | None:
    """The value of the ``runwarden_session`` cookie, if the request has one."""
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for pair in bytes(value).decode("latin-1").split(";"):
            name, _, text = pair.strip().partition("=")
            if name == SESSION_COOKIE and text:
                return text.strip('"')
    return None


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, default port dropped."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6, as it is written in a URL
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def own_origin(scope: Mapping[str, Any]) -> str | None:
    """The origin the client addressed: scheme and ``Host`` (after the proxy rewrite)."""
    host = header(scope, b"host")
    if not host:
        return None
    return _origin_of(f"{scope.get('scheme', 'http')}://{host}")


def is_same_origin(scope: Mapping[str, Any]) -> bool:
    """Whether ``Origin`` (else ``Referer``) names the origin this request was sent to.

    Neither header, or ``Origin: null`` (a sandboxed or privacy-stripped context), is not
    proof of anything: refused.
    """
    ours = own_origin(scope)
    claimed = header(scope, b"origin")
    if claimed is None:
        claimed = header(scope, b"referer")
    if ours is None or claimed is None:
        return False
    return _origin_of(claimed) == ours


async def form_field(
    scope: Mapping[str, Any], receive: Receive, name: str
) -> tuple[str | None, Receive]:
    """Field ``name`` of an urlencoded body, and a ``receive`` that replays the body.

    Stops reading past :data:`MAX_FORM_BYTES`: another content type, a longer body or a
    disconnect give None, with what was read still replayed to the app.
    """
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != _FORM:
        return None, receive
    chunks: list[bytes] = []
    size = 0
    more = True
    first: list[dict[str, Any]] = []
    while more and size <= MAX_FORM_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            first.append(message)  # a disconnect: pass it on as it came
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    replay = [*first] if first else [{"type": "http.request", "body": body, "more_body": more}]

    async def replayed() -> dict[str, Any]:
        return replay.pop(0) if replay else await receive()

    if more or first:
        return None, replayed
    values = urllib.parse.parse_qs(body.decode("latin-1"), max_num_fields=100).get(name)
    return (values[0] if values else None), replayed


def login_location(scope: Mapping[str, Any]) -> str:
    """``/ui/login?next=...``: where an unauthenticated page request is sent.

    ``next`` is the page asked for (path with the root path, and query) when it is a
    page load; after a form post it is left out (the login would GET a POST target).
    """
    root = scope.get("root_path", "")
    if scope["method"] not in ("GET", "HEAD"):
        return f"{root}/ui/login"
    target = scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return f"{root}/ui/login?next={urllib.parse.quote(target, safe='')}"


def refusal_page(scope: Mapping[str, Any], title: str, detail: str) -> bytes:
    """A small HTML page for a refused dashboard request (no inline script or style)."""
    root = html.escape(scope.get("root_path", ""))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} · runwarden</title>\n"
        f'<link rel="stylesheet" href="{root}/ui/static/ui.css">\n</head>\n<body>\n'
        f'<main id="main">\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(detail)}</p>\n'
        f'<p><a href="{root}/ui/">Back to the dashboard</a></p>\n</main>\n</body>\n</html>\n'
    ).encode()
