"""What every dashboard page shares: its template context, time display and status labels.

Page handlers build their own data through the daemon (the same use cases as the API) and
hand it to :func:`page`, which adds what the layout needs: the root path for links, the CSRF
token of the session, the display zone, whether auth is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Request
from litestar.response import Template

ZONE_COOKIE = "runwarden_zone"
"""The display zone: ``utc``, ``scheduler`` or an IANA name (the browser's, set by ui.js)."""

SESSION_CSRF = "runwarden.csrf"
"""Scope key under which the security middleware leaves the session's CSRF token."""


@dataclass(frozen=True)
class DisplayZone:
    """The one zone every timestamp of a page is shown in, and how the page labels it."""

    zone: ZoneInfo
    choice: str
    """``utc``, ``scheduler`` or ``local`` (the browser's zone, named by ui.js)."""
    label: str


def display_zone(request: Request[Any, Any, Any], scheduler_zone: str) -> DisplayZone:
    """The zone chosen in the ``runwarden_zone`` cookie; the scheduler's zone by default."""
    wanted = request.cookies.get(ZONE_COOKIE, "scheduler")
    if wanted == "utc":
        return DisplayZone(ZoneInfo("UTC"), "utc", "UTC")
    if wanted not in ("", "scheduler") and len(wanted) <= 64:
        try:
            return DisplayZone(ZoneInfo(wanted), "local", f"{wanted} (local)")
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a stale or forged cookie: fall back to the scheduler's zone
    return DisplayZone(ZoneInfo(scheduler_zone), "scheduler", f"{scheduler_zone} (scheduler)")


def iso(value: datetime) -> str:
    """The machine-readable instant of a ``<time datetime>``: UTC with a ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    scheduler_zone: str,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """Render ``template`` with the layout's context added to ``context``."""
    zone = display_zone(request, scheduler_zone)
    return Template(
        template_name=template,
        status_code=status_code,
        context={
            "root": request.scope.get("root_path", ""),
            "csrf_token": request.scope.get(SESSION_CSRF, ""),
            "auth_on": request.app.state.get("auth_on", False),
            "logged_in": bool(request.scope.get(SESSION_CSRF)),
            "zone": zone,
            "scheduler_zone": scheduler_zone,
            "path": request.url.path,
            "query": request.url.query,
            **context,
        },
    )
