"""``/ui/tasks/{name}``: one task's config, its duration chart and its run history."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.daemon import Daemon
from app.ui.chart import duration_bars
from app.ui.cron_text import describe
from app.ui.live import not_found, respond
from app.ui.views import PAGE_SIZES, STATUS_CHOICES, RunFilters, pager, parse_filters
from domain.errors import TaskNotFound
from domain.listing import RunQuery
from domain.tasks import TaskSpec

CHART_RUNS = 50


def config_rows(task: TaskSpec) -> list[tuple[str, str]]:
    """The task's settings as loaded, for people. Values that came from ``${...}`` are
    shown as written; env values are never shown (they may be secrets), only their keys."""
    shown = task.written

    def value(key: str, actual: object) -> str:
        return shown.get(key, "" if actual is None else str(actual))

    rows = [
        ("kind", task.kind.value),
        ("run", value("run", task.run)),
        ("description", value("description", task.description)),
        ("group", value("group", task.group)),
        ("cron", task.cron or ""),
        ("timezone", task.timezone),
        ("on_overlap", task.on_overlap.value),
        ("max_concurrent", str(task.max_concurrent)),
        ("queue_max", str(task.queue_max)),
        ("timeout", "" if task.timeout is None else f"{task.timeout:g} s"),
        ("retry_attempts", str(task.retry_attempts)),
        ("retry_delay", f"{task.retry_delay:g} s ({task.retry_backoff.value})"),
        ("graceful_stop", f"{task.graceful_stop:g} s ({task.stop_signal})"),
        ("exit_codes", ", ".join(str(c) for c in sorted(task.exit_codes))),
        ("working_dir", value("working_dir", task.working_dir)),
        ("shell", task.shell),
        ("api_trigger", "yes" if task.api_trigger else "no"),
        ("log_max_size", f"{task.log_max_size:,} bytes ({task.log_on_full.value})"),
        ("env", ", ".join(sorted(task.env)) + (" (values hidden)" if task.env else "")),
    ]
    if task.is_service:
        rows.append(("instances", str(task.instances)))
        rows.append(("restart_delay", f"{task.restart_delay:g} s ({task.restart_backoff.value})"))
    return [(key, text) for key, text in rows if text]


@get("/ui/tasks/{task_name:str}", include_in_schema=False)
async def task_page(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], task_name: str
) -> Template:
    """The task's page; filters, sorting and paging of its history are in the URL."""
    try:
        task = daemon.task(task_name)
    except TaskNotFound:
        return not_found(request, daemon, f"task {task_name[:100]!r}", back="/ui/tasks")
    filters, errors = parse_filters(request.query_params)
    # The path names the task: a task_name in the query would only ride along in links.
    filters = RunFilters() if errors else replace(filters, task_name="")
    if filters == RunFilters(limit=CHART_RUNS):
        # The default history page is the chart's runs: one read serves both.
        history = recent = await daemon.list_runs(filters.query(task.name))
    else:
        history, recent = await asyncio.gather(
            daemon.list_runs(filters.query(task.name)),
            daemon.list_runs(RunQuery(task_name=task.name, limit=CHART_RUNS)),
        )
    return respond(
        request,
        daemon,
        "pages/task.html",
        "fragments/task.html",
        status_code=400 if errors else 200,
        active="Tasks",
        task=task,
        reading=describe(task.cron),
        next_run=daemon.next_run_at(task.name) if task.cron else None,
        config=config_rows(task),
        errors=errors,
        chart=duration_bars(recent.runs, daemon.clock.now(), CHART_RUNS),
        runs=history.runs,
        filters=filters,
        pager=pager(filters, len(history.runs), history.total),
        page_sizes=PAGE_SIZES,
        status_choices=STATUS_CHOICES,
        base=f"/ui/tasks/{task.name}",
    )
