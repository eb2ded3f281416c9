"""``/ui/prefs``: the display zone, chosen with a plain form (ui.js does it without a reload)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import Cookie
from litestar.response import Redirect

from app.ui.render import ZONE_COOKIE
from app.ui.safety import same_origin_path


@get("/ui/prefs", include_in_schema=False)
async def set_prefs(
    request: Request[Any, Any, Any], zone: str = "scheduler", next: str = "/ui/"
) -> Redirect:
    """Remember the display zone in a cookie and go back to the page it was chosen on."""
    root = request.scope.get("root_path", "")
    # "local" needs the browser's zone, which only ui.js knows; without it, the scheduler's.
    value = zone if zone in ("utc", "scheduler") else "scheduler"
    response = Redirect(path=root + same_origin_path(next, root), status_code=303)
    response.cookies.append(
        Cookie(key=ZONE_COOKIE, value=value, path="/", max_age=365 * 86400, samesite="strict")
    )
    return response
