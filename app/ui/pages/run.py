"""``/ui/runs/{id}``: one run's facts, its actions and its log viewer.

The actions are plain forms (stop, run again, delete) posting to ``/ui/runs/{id}/…``; each
calls the daemon's use case, as the API does, and answers 303 back to a page, so they work
without JavaScript. A domain error becomes a page saying what went wrong, with its status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect, Template

from app.daemon import Daemon
from app.ui.csrf import require_csrf
from app.ui.logview import MAX_LINES_IN_PAGE, PAGE_LINES, LogView, read_view
from app.ui.render import page
from domain.errors import (
    DomainError,
    RunNotFound,
    StoreUnavailable,
    TaskNotFound,
    TriggerForbidden,
)
from domain.run import Run, RunStatus
from domain.tasks import TaskSpec

# Run ids are ULIDs; anything else cannot name a run (and is not echoed back as one).
_RUN_ID = re.compile(r"^[0-9A-Za-z]{1,100}$")
_ERROR_STATUS: dict[type[Exception], int] = {
    RunNotFound: 404,
    TaskNotFound: 404,
    TriggerForbidden: 403,
    StoreUnavailable: 503,
}
"""Statuses as ``app/errors.py`` gives them to the API; the other errors an action can meet
(not active, still active, skipped, a service) are conflicts: 409."""


# The status badge names outcomes as the dashboard shows them everywhere (filters.py).
_SHOWN_AS = {"success": "succeeded", "timeout": "timed_out", "log_overflow": "overflowed"}


class CsrfRefused(Exception):
    """The form did not carry the session's CSRF token."""


def check_csrf(request: Request[Any, Any, Any], form: Mapping[str, Any]) -> None:
    """The middleware's CSRF rule again, inside the handler (``app/ui/csrf.py``), as a
    refusal this page renders."""
    try:
        require_csrf(request, form)
    except PermissionDeniedException as refused:
        raise CsrfRefused from refused


def _status_of(exc: Exception) -> int:
    return _ERROR_STATUS.get(type(exc), 409)


def problem_page(
    request: Request[Any, Any, Any], daemon: Daemon, status: int, title: str, message: str
) -> Template:
    """An error as a page: its status, a heading and what to do."""
    return page(
        request,
        "run_problem.html",
        scheduler_zone=daemon.config.timezone,
        status_code=status,
        active="Runs",
        problem_title=title,
        message=message,
    )


def _parse_before(value: str | None) -> int | None:
    """``?before=N``: a line number; ValueError for anything else."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 16:
        raise ValueError(value)
    return int(value)


def run_facts(daemon: Daemon, run: Run) -> dict[str, Any]:
    """What the facts panel and its actions need, beyond the run itself."""
    task: TaskSpec | None = daemon.tasks.get(run.task_name)
    service = task is not None and task.is_service
    active = run.status is not RunStatus.ENDED
    status_name = run.end_reason.value if run.end_reason else run.status.value
    seconds = None
    if run.start_at is not None and run.end_at is not None:
        seconds = (run.end_at - run.start_at).total_seconds()
    return {
        "run": run,
        "task": task,
        "is_service": service,
        "status_name": status_name,
        "badge_name": _SHOWN_AS.get(status_name, status_name),
        "duration_seconds": seconds,
        "elapsed_since": run.start_at if active and run.start_at else None,
        "can_stop": active and not service,
        "can_rerun": task is not None and not service and task.api_trigger,
        "can_delete": not active,
    }


async def _load(daemon: Daemon, run_id: str) -> Run:
    if not _RUN_ID.match(run_id):
        raise RunNotFound(run_id)
    return await daemon.get_run(run_id)


async def _run_and_view(
    request: Request[Any, Any, Any], daemon: Daemon, run_id: str, before: str | None
) -> tuple[Run, LogView, int | None] | Template:
    """The run, the window of its log to show and the ``before`` asked for; or the page
    that says why not (400 for a bad ``before``, 404, 503)."""
    try:
        first_before = _parse_before(before)
    except ValueError:
        return problem_page(
            request, daemon, 400, "Bad request", "before must be a line number (0 or more)."
        )
    try:
        run = await _load(daemon, run_id)
        view = await read_view(daemon.logs, run.id, first_before)
    except (RunNotFound, StoreUnavailable) as exc:
        return _error_page(request, daemon, exc)
    return run, view, first_before


@get("/ui/runs/{run_id:str}", include_in_schema=False)
async def run_page(
    request: Request[Any, Any, Any],
    daemon: NamedDependency[Daemon],
    run_id: str,
    before: str | None = None,
) -> Template:
    """The run's facts, actions and the last lines of its log (or those before ``before``)."""
    found = await _run_and_view(request, daemon, run_id, before)
    if isinstance(found, Template):
        return found
    run, view, first_before = found
    return page(
        request,
        "run.html",
        scheduler_zone=daemon.config.timezone,
        active="Runs",
        view=view,
        before=first_before,
        page_lines=PAGE_LINES,
        max_lines=MAX_LINES_IN_PAGE,
        **run_facts(daemon, run),
    )


@get("/ui/runs/{run_id:str}/facts", include_in_schema=False)
async def run_facts_fragment(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: str
) -> Template:
    """The facts and actions alone: refetched by the page when run events arrive."""
    try:
        run = await _load(daemon, run_id)
    except (RunNotFound, StoreUnavailable) as exc:
        return _error_page(request, daemon, exc)
    return page(
        request,
        "run_facts.html",
        scheduler_zone=daemon.config.timezone,
        **run_facts(daemon, run),
    )


@get("/ui/runs/{run_id:str}/log", include_in_schema=False)
async def run_log_fragment(
    request: Request[Any, Any, Any],
    daemon: NamedDependency[Daemon],
    run_id: str,
    before: str | None = None,
) -> Template:
    """The lines before ``before`` as HTML, for "load earlier" with JavaScript."""
    found = await _run_and_view(request, daemon, run_id, before)
    if isinstance(found, Template):
        return found
    view = found[1]
    return page(request, "run_log_lines.html", scheduler_zone=daemon.config.timezone, view=view)


def _error_page(request: Request[Any, Any, Any], daemon: Daemon, exc: Exception) -> Template:
    status = _status_of(exc)
    if isinstance(exc, RunNotFound):
        return problem_page(
            request,
            daemon,
            404,
            "Run not found",
            "No run has this id. It may have been deleted, or removed by retention.",
        )
    title = {503: "Database unavailable", 403: "Not allowed"}.get(status, "Not possible")
    return problem_page(request, daemon, status, title, str(exc))


async def _action(
    request: Request[Any, Any, Any], daemon: Daemon, run_id: str, action: str
) -> Template | Redirect:
    """Check the form, do ``action`` to the run, and say where the browser goes next."""
    root = request.scope.get("root_path", "")
    form = await request.form()
    try:
        check_csrf(request, form)
    except CsrfRefused:
        return problem_page(
            request,
            daemon,
            403,
            "Form expired",
            "This form was not sent by this session's page; reload the page and try again.",
        )
    try:
        run = await _load(daemon, run_id)
        if action == "stop":
            await daemon.stop_run(run.task_name, run.id)
            target = f"/ui/runs/{run.id}"
        elif action == "rerun":
            new, _ = await daemon.trigger(run.task_name)
            target = f"/ui/runs/{new.id}"
        else:
            await daemon.delete_run(run.task_name, run.id)
            target = f"/ui/tasks/{run.task_name}"
    except DomainError as exc:
        return _error_page(request, daemon, exc)
    return Redirect(path=root + target, status_code=303)


@post("/ui/runs/{run_id:str}/stop", include_in_schema=False, status_code=303)
async def run_stop(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: str
) -> Template | Redirect:
    """Stop the run (its process group gets the task's stop signal), then show it."""
    return await _action(request, daemon, run_id, "stop")


@post("/ui/runs/{run_id:str}/rerun", include_in_schema=False, status_code=303)
async def run_again(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: str
) -> Template | Redirect:
    """Trigger the run's task again, then show the new run."""
    return await _action(request, daemon, run_id, "rerun")


@post("/ui/runs/{run_id:str}/delete", include_in_schema=False, status_code=303)
async def run_delete(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: str
) -> Template | Redirect:
    """Delete an ended run and its log, then show its task."""
    return await _action(request, daemon, run_id, "delete")


RUN_HANDLERS: list[Any] = [
    run_page,
    run_facts_fragment,
    run_log_fragment,
    run_stop,
    run_again,
    run_delete,
]
