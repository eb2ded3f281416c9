"""``/ui/``: the overview (daemon and cluster state, what needs attention, what runs now)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.daemon import Daemon
from app.ui.live import respond
from app.ui.task_rows import task_rows
from domain.listing import RunQuery, StatusFilter
from domain.run import RunStatus

RECENT = 10
UP_NEXT = 8
RUNNING = 20
# A task's last ended run is among its newest few unless that many are still active.
LAST_FEW = 5


@get("/ui/", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """The first page: is everything all right, and if not, what."""
    specs = sorted(daemon.tasks.values(), key=lambda t: t.name)
    nodes, summary, rows, running, recent = await asyncio.gather(
        daemon.nodes(),
        daemon.summarize_runs(),
        task_rows(daemon, specs, LAST_FEW),
        daemon.list_runs(
            RunQuery(status=StatusFilter(phases=frozenset({RunStatus.RUNNING})), limit=RUNNING)
        ),
        daemon.list_runs(RunQuery(limit=RECENT)),
    )
    now = daemon.clock.now()
    attention = [row for row in rows if "attention" in row.states]
    upcoming = sorted(
        (row for row in rows if row.next_run is not None),
        key=lambda row: (row.next_run or now, row.spec.name),
    )[:UP_NEXT]
    return respond(
        request,
        daemon,
        "pages/overview.html",
        "fragments/overview.html",
        active="Overview",
        daemon=daemon,
        nodes=nodes,
        summary=summary,
        attention=attention,
        running=running,
        upcoming=upcoming,
        recent=recent.runs,
        task_count=len(specs),
    )
