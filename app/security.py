"""Bearer-token and session-cookie auth, auth-failure rate limiting, security headers and
request ids.

All of it is one pure ASGI middleware, :class:`SecurityMiddleware`, wrapped around the whole
Litestar handler (not per route), so 404s, 405s and 413s get the same headers and an
unauthenticated client cannot even learn which ``/api`` routes exist. It only rewrites the
``http.response.start`` message and never buffers a response body, so SSE streams pass
straight through (it reads the body of a small dashboard form only, for its CSRF token).
Tokens are in :mod:`app.tokens` (re-exported here); the browser's side in
:mod:`app.browser_auth`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from app import browser_auth
from app.auth_limit import FailureLimiter
from app.tokens import TOKEN_BYTES as TOKEN_BYTES
from app.tokens import TOKEN_PREFIX as TOKEN_PREFIX
from app.tokens import AuthSetupError as AuthSetupError
from app.tokens import LiveTokens as LiveTokens
from app.tokens import TokenSet as TokenSet
from app.tokens import hash_token as hash_token
from app.tokens import is_hashed_token as is_hashed_token
from app.tokens import new_token as new_token
from app.tokens import resolve_tokens as resolve_tokens
from app.urls import ProxyResolver, scope_base_url
from domain.errors import StoreUnavailable

log = logging.getLogger("runwarden.security")

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the request being served, for log lines; ``-`` outside a request."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_CHALLENGE = b'Bearer realm="runwarden"'
_INVALID_TOKEN_CHALLENGE = b'Bearer realm="runwarden", error="invalid_token"'
_PUBLIC = frozenset({"/", "/health", "/ready", "/openapi.json", "/docs", "/ui/login"})
_PUBLIC_TREES = ("/docs/", "/schemas/", "/ui/static/")

# /docs is Swagger UI from our own /docs/assets: nothing from elsewhere. Its page starts the
# UI with an inline script (the document is embedded in it) and the UI sets inline styles.
_CSP_API = "default-src 'none'; frame-ancestors 'none'"
_CSP_DOCS = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The dashboard: our own scripts and styles only, no inline script or style anywhere.
_CSP_UI = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ALWAYS_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` so a log format can name the request a line belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class SessionCheck(Protocol):
    """What the middleware asks about a session cookie (``app.sessions.SessionGate``)."""

    def tokens(self) -> TokenSet:
        """The tokens accepted now (sessions of other tokens are dead)."""
        ...

    async def csrf_token(self, session_id: str) -> str | None:
        """The CSRF token of a live session of an accepted token; None for any other id."""
        ...


@dataclass(frozen=True)
class SecurityOptions:
    """How the middleware guards the API; the default refuses every protected request."""

    tokens: TokenSet | None = field(default_factory=TokenSet)
    """Accepted tokens; ``None`` turns auth off (``RUNWARDEN_AUTH=off``)."""
    metrics_public: bool = False
    proxies: ProxyResolver = field(default_factory=ProxyResolver)
    root_path: str = ""


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Mapping[str, Any]) -> str | None:
    scheme, _, token = (_header(scope, b"authorization") or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _is_public(path: str, metrics_public: bool) -> bool:
    """Public routes; anything not listed needs a token (unknown paths too: fail closed)."""
    if path != "/" and path.endswith("/"):
        path = path[:-1]  # routed like the path without it
    if path in _PUBLIC or (metrics_public and path == "/metrics"):
        return True
    if path.startswith(_PUBLIC_TREES):
        # Dot or empty segments could be routed somewhere else than they appear to go.
        return all(part not in ("", ".", "..") for part in path[1:].split("/"))
    return False


class SecurityMiddleware:
    """Proxy headers and root path, request id, security headers, auth and its rate limit.

    With ``sessions``, a request without a bearer token may authenticate with the
    dashboard's session cookie instead (see :mod:`app.browser_auth`); an unauthenticated
    dashboard page is then sent to ``/ui/login``.
    """

    def __init__(
        self,
        app: Any,
        options: SecurityOptions,
        limiter: FailureLimiter | None = None,
        sessions: SessionCheck | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.limiter = limiter if limiter is not None else FailureLimiter.from_env()
        self.sessions = sessions
        # Without trusted proxies or a root path there is nothing to rewrite: skip the work.
        self._rewrites = bool(options.proxies.trusted or options.root_path)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._rewrites:
            self.options.proxies.apply(scope, self.options.root_path)
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        sent_id = _header(scope, b"x-request-id")
        request_id = sent_id if sent_id and _REQUEST_ID.match(sent_id) else uuid.uuid4().hex
        reset = REQUEST_ID.set(request_id)
        try:
            send = self._with_headers(send, path, request_id)
            if self.options.tokens is None or _is_public(path, self.options.metrics_public):
                await self.app(scope, receive, send)
                return
            tokens = self.options.tokens if self.sessions is None else self.sessions.tokens()
            if self.sessions is not None and _bearer(scope) is None:
                await self._by_session(scope, receive, send, path, tokens)
                return
            refusal = self._refusal(scope, tokens)
            if refusal is None:
                await self.app(scope, receive, send)
            else:
                await _send_problem(send, scope, *refusal)
        finally:
            REQUEST_ID.reset(reset)

    async def _by_session(
        self, scope: Any, receive: Any, send: Any, path: str, tokens: TokenSet
    ) -> None:
        """A request without a bearer token: the session cookie, else refused.

        A cookie-authenticated unsafe request must also come from our own origin and carry
        the session's CSRF token (header, or a dashboard form's field); a valid session puts
        its CSRF token in the scope, for the pages to render.
        """
        assert self.sessions is not None
        is_ui = path == "/ui" or path.startswith("/ui/")
        cookie = browser_auth.session_cookie(scope)
        try:
            csrf = await self.sessions.csrf_token(cookie) if cookie else None
        except StoreUnavailable:
            await _send_problem(send, scope, 503, "database unavailable; retry shortly", [])
            return
        if csrf is None:
            if is_ui:
                await _send_to_login(send, scope)
                return
            refusal = self._refusal(scope, tokens)  # no bearer token: always a 401
            if refusal is not None:
                await _send_problem(send, scope, *refusal)
            return
        if scope["method"] not in browser_auth.SAFE_METHODS:
            detail = None
            if not browser_auth.is_same_origin(scope):
                detail = "cross-origin request refused: the session cookie is accepted only "
                detail += "from this site's own pages (API clients send a bearer token)"
            else:
                presented = _header(scope, browser_auth.CSRF_HEADER)
                if presented is None and is_ui:
                    presented, receive = await browser_auth.form_field(
                        scope, receive, browser_auth.CSRF_FIELD
                    )
                if presented is None or not browser_auth.same_secret(presented, csrf):
                    detail = "missing or wrong CSRF token; reload the page and try again"
            if detail is not None:
                log.warning("%s %s refused: %s", scope["method"], scope["path"], detail)
                if is_ui:
                    await _send_page(send, scope, 403, "Forbidden", detail)
                else:
                    await _send_problem(send, scope, 403, detail, [])
                return
        scope[browser_auth.SESSION_CSRF] = csrf
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Any, tokens: TokenSet
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Why this request may not pass (status, detail, headers), or None if it may.

        A valid token always passes, whatever its client did before: refusing it would let
        one client with a stale token lock out every other client at its address. Only a
        presented, wrong token counts as a failure; from a client over the failure limit it
        gets 429 instead of 401 (and is not logged again).
        """
        token = _bearer(scope)
        if token is not None and tokens.matches(token):
            return None
        client = scope["client"][0] if scope.get("client") else "unknown"
        if token is None:
            detail = "missing bearer token"
            log.info("%s %s from %s: %s", scope["method"], scope["path"], client, detail)
            return 401, detail, [(b"www-authenticate", _CHALLENGE)]
        wait = self.limiter.retry_after(client)
        if wait:
            detail = f"too many failed authentications; retry in {wait} s"
            return 429, detail, [(b"retry-after", str(wait).encode())]
        self.limiter.record_failure(client)
        detail = "invalid bearer token"
        log.warning("%s %s from %s: %s", scope["method"], scope["path"], client, detail)
        return 401, detail, [(b"www-authenticate", _INVALID_TOKEN_CHALLENGE)]

    @staticmethod
    def _with_headers(send: Any, path: str, request_id: str) -> Any:
        is_api = path == "/api" or path.startswith("/api/")
        is_docs = path == "/docs" or path.startswith("/docs/")
        is_ui = path == "/ui" or path.startswith("/ui/")
        static, replaced = _STATIC_HEADERS[is_api, is_docs or is_ui, is_ui]
        ours = [*static, (b"x-request-id", request_id.encode())]

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() not in replaced]
                message = {**message, "headers": [*kept, *ours]}
            await send(message)

        return send_with_headers


Headers = tuple[tuple[bytes, bytes], ...]


def _static_headers(is_api: bool, is_page: bool, is_ui: bool) -> tuple[Headers, frozenset[bytes]]:
    """The headers every response of a kind of path gets; the names they replace."""
    csp = _CSP_UI if is_ui else _CSP_DOCS if is_page else _CSP_API
    cache = ((b"cache-control", b"no-store"),) if is_api else ()
    always: Headers = ALWAYS_HEADERS
    if is_ui:
        # With no-referrer, browsers send ``Origin: null`` on a same-origin form post, and
        # the CSRF check could not tell it from a forged one; same-origin keeps both real
        # for our own requests and still sends nothing to other sites.
        always = tuple(h for h in ALWAYS_HEADERS if h[0] != b"referrer-policy")
        always += ((b"referrer-policy", b"same-origin"),)
    headers = (*always, (b"content-security-policy", csp.encode()), *cache)
    return headers, frozenset({name for name, _ in headers} | {b"x-request-id"})


# Built once: (is_api, is_page, is_ui) -> headers and replaced names; x-request-id is per
# request.
_STATIC_HEADERS = {
    (a, p, u): _static_headers(a, p, u)
    for a in (False, True)
    for p in (False, True)
    for u in (False, True)
}


def encode_problem(base_url: str, status: int, detail: str) -> bytes:
    """The problem+json body of a refusal made outside Litestar (here and by the HTTP parser)."""
    from http import HTTPStatus

    from app.schemas import ErrorModel

    return msgspec.json.encode(
        ErrorModel(
            schema=f"{base_url}/schemas/ErrorModel.json",
            type="about:blank",
            title=HTTPStatus(status).phrase,
            status=status,
            detail=detail,
        )
    )


async def _send_problem(
    send: Any, scope: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    from app.errors import PROBLEM_JSON

    body = encode_problem(scope_base_url(scope), status, detail)
    start_headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_to_login(send: Any, scope: Any) -> None:
    """303 to the login page; htmx requests get 401 with ``HX-Redirect`` (their XHR would
    follow a 303 and swap the login page into a fragment)."""
    location = browser_auth.login_location(scope).encode("latin-1")
    if _header(scope, b"hx-request"):
        headers = [(b"hx-redirect", location), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
    else:
        headers = [(b"location", location), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _send_page(send: Any, scope: Any, status: int, title: str, detail: str) -> None:
    body = browser_auth.refusal_page(scope, title, detail)
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
