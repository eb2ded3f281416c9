"""The dashboard: server-rendered pages under ``/ui`` (Jinja2 templates, htmx, ui.js).

Pages call the daemon's use cases directly, as the API controllers do; they never call the
API over HTTP. Every page works without JavaScript: ui.js only adds live updates, the log
tail, the theme and zone switches and keyboard shortcuts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, get
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.ui.engine import LazyJinjaEngine
from app.ui.pages import PAGE_HANDLERS

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def template_config() -> TemplateConfig[LazyJinjaEngine]:
    """Jinja2 templates of ``app/ui/templates`` with autoescape on and our filters, the
    engine built on the first page rendered."""
    return TemplateConfig(directory=TEMPLATES, engine=LazyJinjaEngine)


@get("/", include_in_schema=False)
async def to_overview(request: Request[Any, Any, Any]) -> Redirect:
    """``/`` is the dashboard's overview."""
    return Redirect(path=f"{request.scope.get('root_path', '')}/ui/", status_code=302)


static_files = create_static_files_router(
    path="/ui/static",
    directories=[STATIC],
    name="ui-static",
    include_in_schema=False,
    # Vendored files carry their version in their name; ours change with releases.
    cache_control=CacheControlHeader(max_age=3600),
)

UI_HANDLERS: list[Any] = [to_overview, static_files, *PAGE_HANDLERS]
