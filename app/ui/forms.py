"""What the dashboard's POST forms share: the CSRF hook, the way back, the notice.

Every action is a plain ``<form method="post">`` that works without JavaScript: its
handler calls the daemon's use case and answers 303 to the page it came from, leaving one
line of what happened in a short-lived cookie that the next page shows (never in the URL,
where anyone could write a message for our page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from app.ui.csrf import require_csrf
from app.ui.safety import same_origin_path

NOTICE_COOKIE = "runwarden_notice"
MAX_NOTICE = 400


async def check_form_csrf(request: Request[Any, Any, Any], form: Mapping[str, Any]) -> None:
    """Refuse a dashboard form without the session's CSRF token (``csrf_token`` field).

    The one place where the pages' POST handlers check it, again after the security
    middleware did (``app/ui/csrf.py``): 403 for a cookie-authenticated form without the
    session's token; bearer-authenticated requests and auth off need none.
    """
    require_csrf(request, form)


async def read_form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """The posted fields, each as the list of its values (checkbox groups repeat)."""
    form = await request.form()
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    await check_form_csrf(request, {k: v[0] for k, v in fields.items()})
    return fields


def back(
    request: Request[Any, Any, Any], fields: Mapping[str, list[str]], default: str, notice: str
) -> Redirect:
    """303 to the form's ``next`` path (ours only), carrying ``notice`` in a cookie."""
    root = request.scope.get("root_path", "")
    target = fields.get("next", [""])[0]
    response = Redirect(path=root + same_origin_path(target, root, default), status_code=303)
    response.cookies.append(
        Cookie(
            key=NOTICE_COOKIE,
            value=quote(notice[:MAX_NOTICE]),
            path="/ui",
            max_age=60,
            httponly=True,
            samesite="strict",
        )
    )
    return response


def take_notice(request: Request[Any, Any, Any], template: Template) -> Template:
    """Show the pending notice once: put it in the page's context, expire the cookie."""
    raw = request.cookies.get(NOTICE_COOKIE)
    if raw and isinstance(template.context, dict):
        template.context["notice"] = unquote(raw)[:MAX_NOTICE]
        template.cookies.append(Cookie(key=NOTICE_COOKIE, value="", path="/ui", max_age=0))
    return template
