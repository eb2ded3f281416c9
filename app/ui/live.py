"""One handler, two answers: the whole page, or only its live fragment for htmx.

A page's changing part is a fragment template that the page template includes; it carries
``hx-get`` (the page's own URL) and ``hx-trigger="runs-changed from:body ..."``. When htmx
re-fetches it (header ``HX-Request``), the handler renders the fragment alone, so the
server stays the only renderer and no JSON is ever put in the page as HTML.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from app.daemon import Daemon
from app.ui.forms import take_notice
from app.ui.render import page


def wants_fragment(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx asked for the fragment (a boosted navigation wants the page)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true"


def respond(
    request: Request[Any, Any, Any],
    daemon: Daemon,
    template: str,
    fragment: str | None = None,
    /,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """The page (with a pending notice shown once) or, for htmx, its fragment."""
    partial = fragment is not None and wants_fragment(request)
    rendered = page(
        request,
        fragment if partial and fragment else template,
        scheduler_zone=daemon.config.timezone,
        status_code=status_code,
        now=daemon.clock.now(),
        **context,
    )
    # One URL answers two ways: caches must key on the header, and live data is not kept
    # (a back button must not show a stale fragment instead of the page).
    rendered.headers["Vary"] = "HX-Request"
    rendered.headers["Cache-Control"] = "no-store"
    return rendered if partial else take_notice(request, rendered)


def not_found(
    request: Request[Any, Any, Any], daemon: Daemon, what: str, **context: Any
) -> Template:
    """The 404 page, naming what was not found."""
    return respond(request, daemon, "pages/not_found.html", status_code=404, what=what, **context)
