"""``/ui/tasks``: every task and service, filterable; run now, stop, restart as forms."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from app.daemon import Daemon
from app.ui.forms import back, read_form
from app.ui.live import respond
from app.ui.task_rows import KINDS, STATES, select, strip_html, task_rows
from domain.errors import DomainError
from domain.listing import RunQuery, StatusFilter
from domain.run import RunStatus

MAX_Q = 100
ACTIVE = StatusFilter(phases=frozenset({RunStatus.PENDING, RunStatus.RUNNING}))


@get("/ui/tasks", include_in_schema=False)
async def tasks_page(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> Template:
    """The tasks table, filtered by name (``q``), ``kind`` and ``state``."""
    params = request.query_params
    q = params.get("q", "").strip()
    kind = params.get("kind", "")
    state = params.get("state", "")
    errors = []
    if len(q) > MAX_Q:
        errors.append(f"q is at most {MAX_Q} characters")
        q = ""
    if kind and kind not in KINDS:
        errors.append(f"kind {kind[:40]!r} is not one of: {', '.join(KINDS)}")
        kind = ""
    if state and state not in STATES:
        errors.append(f"state {state[:40]!r} is not one of: {', '.join(STATES)}")
        state = ""
    specs = sorted(daemon.tasks.values(), key=lambda t: t.name)
    rows = await task_rows(daemon, specs)
    return respond(
        request,
        daemon,
        "pages/tasks.html",
        "fragments/tasks.html",
        status_code=400 if errors else 200,
        active="Tasks",
        errors=errors,
        rows=select(rows, q, kind, state),
        every=len(rows),
        q=q,
        kind=kind,
        state=state,
        kinds=KINDS,
        states=STATES,
        strip_html=strip_html,
    )


async def _act(request: Request[Any, Any, Any], task_name: str, action: Any) -> Redirect:
    fields = await read_form(request)
    try:
        notice = await action()
    except DomainError as error:
        notice = f"{task_name}: {error}"
    return back(request, fields, "/ui/tasks", notice)


@post("/ui/tasks/{task_name:str}/run", include_in_schema=False, status_code=303)
async def run_now(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], task_name: str
) -> Redirect:
    """Trigger a run of the task, as ``POST /api/tasks/{name}/run`` does."""

    async def trigger() -> str:
        run, _ = await daemon.trigger(task_name)
        return f"{task_name}: run {run.id} triggered"

    return await _act(request, task_name, trigger)


@post("/ui/tasks/{task_name:str}/stop", include_in_schema=False, status_code=303)
async def stop(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], task_name: str
) -> Redirect:
    """Stop a service's instances, or every pending and running run of a task."""

    async def stop_all() -> str:
        if daemon.task(task_name).is_service:
            await daemon.stop_service(task_name)
            return f"service {task_name} stopped; restart starts it again"
        page = await daemon.list_runs(RunQuery(task_name=task_name, status=ACTIVE, limit=1000))
        stopped = 0
        for run in page.runs:
            try:
                await daemon.stop_run(task_name, run.id)
                stopped += 1
            except DomainError:
                pass  # it ended meanwhile
        return f"{task_name}: {stopped} run(s) stopped"

    return await _act(request, task_name, stop_all)


@post("/ui/tasks/{task_name:str}/restart", include_in_schema=False, status_code=303)
async def restart(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], task_name: str
) -> Redirect:
    """Restart every instance of a service."""

    async def restart_all() -> str:
        count = await daemon.restart_service(task_name)
        return f"service {task_name} restarted with {count} instance(s)"

    return await _act(request, task_name, restart_all)
