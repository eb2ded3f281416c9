"""``/ui/``: the overview (daemon and cluster state, what needs attention, what runs now)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.daemon import Daemon
from app.ui.cron_text import describe
from app.ui.live import respond
from app.ui.outcomes import ATTENTION, outcome
from domain.listing import ListedRun, RunQuery, StatusFilter
from domain.run import RunStatus
from domain.tasks import TaskSpec

RECENT = 10
UP_NEXT = 8
RUNNING = 20


async def last_ended(daemon: Daemon, specs: list[TaskSpec]) -> list[ListedRun | None]:
    """Each task's newest ended run, in one read."""
    newest = await daemon.newest_runs([s.name for s in specs], 1, ended_only=True)
    return [next(iter(newest.get(s.name, [])), None) for s in specs]


@get("/ui/", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """The first page: is everything all right, and if not, what."""
    specs = sorted(daemon.tasks.values(), key=lambda t: t.name)
    nodes, summary, lasts, running, recent = await asyncio.gather(
        daemon.nodes(),
        daemon.summarize_runs(),
        last_ended(daemon, specs),
        daemon.list_runs(
            RunQuery(status=StatusFilter(phases=frozenset({RunStatus.RUNNING})), limit=RUNNING)
        ),
        daemon.list_runs(RunQuery(limit=RECENT)),
    )
    attention = [
        (spec, run)
        for spec, run in zip(specs, lasts, strict=True)
        if run is not None and outcome(run) in ATTENTION
    ]
    scheduled = [(spec, daemon.next_run_at(spec.name)) for spec in specs if spec.cron]
    upcoming = sorted(
        ((when, spec, describe(spec.cron)) for spec, when in scheduled if when is not None),
        key=lambda item: (item[0], item[1].name),
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
