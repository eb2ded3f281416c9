"""The CSRF rule for dashboard handlers, for those that want to say it out loud.

The security middleware already enforces it before any handler runs: a request that the
session cookie authenticates, with an unsafe method, must come from this origin and carry
the session's CSRF token, in the ``X-CSRF-Token`` header (htmx sends it: ``hx-headers`` on
``<body>``) or, for a form posted to ``/ui/...``, in the ``csrf_token`` field (every form
that posts renders ``<input type="hidden" name="csrf_token" value="{{ csrf_token }}">``).
Such forms use the default encoding (``application/x-www-form-urlencoded``): the
middleware does not parse multipart bodies, so a multipart form needs the header. Bearer-token
requests and ``RUNWARDEN_AUTH=off`` need neither. :func:`require_csrf` checks
the same thing again inside a handler (defence in depth); it costs nothing to call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request
from litestar.exceptions import PermissionDeniedException

from app.browser_auth import CSRF_FIELD, SAFE_METHODS, SESSION_CSRF, same_secret


def require_csrf(request: Request[Any, Any, Any], form: Mapping[str, Any] | None = None) -> None:
    """Raise 403 unless a cookie-authenticated unsafe request carries the session's token.

    ``form`` is the parsed form of the request, when the handler has read it.
    """
    expected = request.scope.get(SESSION_CSRF)
    if not expected or request.method in SAFE_METHODS:
        return  # not authenticated by the cookie (bearer token, auth off), or a safe method
    presented = request.headers.get("x-csrf-token")
    if presented is None and form is not None:
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if presented is None or not same_secret(presented, str(expected)):
        raise PermissionDeniedException("missing or wrong CSRF token; reload the page and retry")
