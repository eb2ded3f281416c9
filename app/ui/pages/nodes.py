"""``/ui/nodes``: the cluster's nodes, alive or dead, as ``GET /api/nodes`` lists them."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.daemon import Daemon
from app.ui.live import respond


@get("/ui/nodes", include_in_schema=False)
async def nodes_page(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """Every node of the cluster; this one is marked."""
    nodes = sorted(await daemon.nodes(), key=lambda n: (not n.alive, n.info.host, n.info.id))
    return respond(
        request,
        daemon,
        "pages/nodes.html",
        "fragments/nodes.html",
        active="Nodes",
        nodes=nodes,
        me=daemon.node_id,
    )
