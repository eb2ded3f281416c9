"""``/ui/runs``: every task's runs in the shared table; selected rows stopped or deleted."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from app.daemon import Daemon
from app.ui.forms import back, read_form
from app.ui.live import respond
from app.ui.views import PAGE_SIZES, STATUS_CHOICES, RunFilters, pager, parse_filters
from domain.errors import DomainError, RunNotActive, RunNotFound, RunStillActive

MAX_SELECTED = 1000
MAX_NAMED = 5
"""Runs named in a notice of what could not be done; the rest are counted."""


@get("/ui/runs", include_in_schema=False)
async def runs_page(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """The history of every task, with the seed listing's filters in the URL."""
    filters, errors = parse_filters(request.query_params)
    if errors:
        filters = RunFilters()
    found = await daemon.list_runs(filters.query(None))
    return respond(
        request,
        daemon,
        "pages/runs.html",
        "fragments/runs.html",
        status_code=400 if errors else 200,
        active="Runs",
        errors=errors,
        runs=found.runs,
        filters=filters,
        pager=pager(filters, len(found.runs), found.total),
        page_sizes=PAGE_SIZES,
        status_choices=STATUS_CHOICES,
        base="/ui/runs",
        search_value=filters.search,
        # A removed task's history stays browsable: its name is offered while filtered on.
        task_names=sorted({*daemon.tasks, *([filters.task_name] if filters.task_name else [])}),
    )


def _why(error: DomainError, run_id: str) -> str:
    if isinstance(error, RunNotFound):
        return f"run {run_id} no longer exists"
    if isinstance(error, RunNotActive):
        return f"run {run_id} already ended"
    if isinstance(error, RunStillActive):
        return f"run {run_id} is still active (stop it first)"
    return f"run {run_id}: {error}"


@post("/ui/runs/bulk", include_in_schema=False, status_code=303)
async def bulk(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Redirect:
    """Stop or delete the runs ticked in the table (field ``run``, ``action``)."""
    fields = await read_form(request)
    action = fields.get("action", [""])[0]
    ids = list(dict.fromkeys(fields.get("run", [])))[:MAX_SELECTED]
    if action not in ("stop", "delete"):
        return back(request, fields, "/ui/runs", "choose stop or delete")
    if not ids:
        return back(request, fields, "/ui/runs", "no runs selected")
    done = 0
    refused = []
    for run_id in ids:
        try:
            run = await daemon.get_run(run_id[:100])
            if action == "stop":
                await daemon.stop_run(run.task_name, run.id)
            else:
                await daemon.delete_run(run.task_name, run.id)
            done += 1
        except DomainError as error:
            refused.append(_why(error, run_id[:40]))
    verb = "stopped" if action == "stop" else "deleted"
    notice = f"{done} run(s) {verb}"
    if refused:
        more = len(refused) - MAX_NAMED
        notice += "; not done: " + "; ".join(refused[:MAX_NAMED])
        notice += f" and {more} more" if more > 0 else ""
    return back(request, fields, "/ui/runs", notice)
