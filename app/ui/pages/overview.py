"""``/ui/``: the overview (daemon and cluster state, what needs attention, what runs now)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.daemon import Daemon
from app.ui.render import page


@get("/ui/", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """The first page: is everything all right, and if not, what."""
    nodes = await daemon.nodes()
    return page(
        request,
        "overview.html",
        scheduler_zone=daemon.config.timezone,
        active="Overview",
        daemon=daemon,
        nodes=nodes,
    )
