"""``/ui/login`` and ``/ui/logout``: a session cookie for an API token, and its end.

The token is checked like a bearer token (constant time, the same accepted set) and
counted by the same failure limiter as the API's, so wrong tokens on the form and on the
API add up. It is never echoed, logged or put in a URL; the browser gets only the session
cookie. With ``RUNWARDEN_AUTH=off`` there is nothing to log in to: both go to ``/ui/``.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from app.browser_auth import is_same_origin, session_cookie
from app.sessions import SessionGate, cookie_header
from app.ui.safety import same_origin_path

log = logging.getLogger("runwarden.security")

_NO_STORE = {"cache-control": "no-store"}


def _gate(request: Request[Any, Any, Any]) -> SessionGate | None:
    gate: SessionGate | None = request.app.state.get("sessions")
    return gate


def _form(
    request: Request[Any, Any, Any],
    next_path: str,
    *,
    error: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    root = request.scope.get("root_path", "")
    return Template(
        template_name="login.html",
        status_code=status_code,
        headers={**_NO_STORE, **(headers or {})},
        context={"root": root, "next": next_path, "error": error},
    )


def _home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect(path=f"{request.scope.get('root_path', '')}/ui/", status_code=303)


@get("/ui/login", include_in_schema=False)
async def login_form(request: Request[Any, Any, Any], next: str = "") -> Template | Redirect:
    """The login form; ``next`` is where to go after it (only paths of this dashboard)."""
    if _gate(request) is None:
        return _home(request)
    return _form(request, next)


@post("/ui/login", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, Any]) -> Template | Redirect | Response[str]:
    """Check the token; on success a session cookie and a 303 to ``next`` (else ``/ui/``)."""
    gate = _gate(request)
    if gate is None:
        return _home(request)
    if not is_same_origin(request.scope):
        # Login CSRF: another site must not log a browser in to a session of its choosing.
        return Response(
            "Cross-origin login refused: log in from this site's own login page.",
            status_code=403,
            media_type="text/plain",
        )
    form = await request.form()
    token = str(form.get("token", ""))
    next_path = str(form.get("next", ""))
    client = request.client.host if request.client else "unknown"
    wait = gate.limiter.retry_after(client)
    if wait:
        error = f"Too many attempts; retry in {wait} s"
        return _form(
            request, next_path, error=error, status_code=429, headers={"retry-after": str(wait)}
        )
    session_id = await gate.open(token) if token else None
    if session_id is None:
        gate.limiter.record_failure(client)
        log.warning("POST %s from %s: invalid token", request.scope["path"], client)
        return _form(request, next_path, error="Invalid token", status_code=401)
    root = request.scope.get("root_path", "")
    target = root + same_origin_path(next_path, root)
    secure = request.scope.get("scheme") == "https"
    return Redirect(
        path=target,
        status_code=303,
        headers={**_NO_STORE, "set-cookie": cookie_header(session_id, secure=secure)},
    )


@post("/ui/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    """End the session (the middleware checked its CSRF token); back to the login form."""
    gate = _gate(request)
    if gate is None:
        return _home(request)
    session_id = session_cookie(request.scope)
    if session_id:
        await gate.close(session_id)
    secure = request.scope.get("scheme") == "https"
    return Redirect(
        path=f"{request.scope.get('root_path', '')}/ui/login",
        status_code=303,
        headers={"set-cookie": cookie_header("", secure=secure, max_age=0)},
    )
