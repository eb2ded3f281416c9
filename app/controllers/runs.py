"""Runs: the seed's listing, one run, stopping and deleting a run, the summary."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from msgspec import UNSET

from app import presenters, schemas
from app.controllers.params import (
    DEFAULT_LIMIT,
    Limit,
    Offset,
    RunIdPath,
    SearchParam,
    SortDirectionParam,
    SortFieldParam,
    StatusParam,
    TaskNamePath,
    TaskNameQuery,
)
from app.daemon import Daemon
from app.openapi import api_problems
from app.urls import schema_url
from domain.listing import RunQuery, SortDirection, SortField, parse_status_filter


def _query(
    task_name: str | None,
    limit: int,
    offset: int,
    status: str | None,
    sort_field: str,
    sort_direction: str,
    search: str | None,
) -> RunQuery:
    return RunQuery(
        task_name=task_name,
        status=parse_status_filter(status),
        search=search or None,
        sort_field=SortField(sort_field),
        sort_direction=SortDirection(sort_direction),
        limit=limit,
        offset=offset,
    )


class RunController(Controller):
    """Run history and control."""

    path = "/api"
    tags = ["runs"]

    @get(
        "/tasks/{taskName:str}/runs",
        operation_id="list-task-runs",
        summary="List runs for a task",
        description="A valid task name with no runs (or no longer configured) lists empty.",
        responses=api_problems(422),
    )
    async def list_task_runs(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        status: StatusParam = None,
        task_name: TaskNameQuery = None,
        sort_field: SortFieldParam = "",
        sort_direction: SortDirectionParam = "",
        search: SearchParam = None,
    ) -> schemas.RunsResponseBody:
        # On this path the path's task name wins over the task_name filter.
        query = _query(task_name_path, limit, offset, status, sort_field, sort_direction, search)
        page = await daemon.list_runs(query)
        return presenters.run_page(request, page.runs, page.total)

    @get(
        "/runs",
        operation_id="list-runs",
        summary="List runs of every task",
        responses=api_problems(422),
    )
    async def list_runs(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        status: StatusParam = None,
        task_name: TaskNameQuery = None,
        sort_field: SortFieldParam = "",
        sort_direction: SortDirectionParam = "",
        search: SearchParam = None,
    ) -> schemas.RunsResponseBody:
        query = _query(task_name, limit, offset, status, sort_field, sort_direction, search)
        page = await daemon.list_runs(query)
        return presenters.run_page(request, page.runs, page.total)

    @get(
        "/tasks/{taskName:str}/runs/{runId:str}",
        operation_id="get-task-run",
        summary="Get one run of a task",
        description="404 if there is no such run, or it is not of that task.",
        responses=api_problems(404, 422),
    )
    async def get_task_run(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
    ) -> schemas.RunDetail:
        run = await daemon.get_run(run_id, task_name_path)
        return presenters.run_detail(request, run, await daemon.notifications_of(run.id))

    @get(
        "/runs/{runId:str}",
        operation_id="get-run",
        summary="Get one run",
        responses=api_problems(404, 422),
    )
    async def get_run(
        self, request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: RunIdPath
    ) -> schemas.RunDetail:
        run = await daemon.get_run(run_id)
        return presenters.run_detail(request, run, await daemon.notifications_of(run.id))

    @post(
        "/tasks/{taskName:str}/runs/{runId:str}/stop",
        operation_id="stop-run",
        summary="Stop a pending or running run",
        description="Waits until the end is recorded. 409 if the run has already ended, or "
        "is an instance of a service (stop or restart the service instead).",
        status_code=200,
        responses=api_problems(404, 409, 422),
    )
    async def stop_run(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
    ) -> schemas.MessageBody:
        run = await daemon.stop_run(task_name_path, run_id)
        return presenters.message_body(
            request, f"run {run.id} stopped ({run.end_reason or run.status})"
        )

    @delete(
        "/tasks/{taskName:str}/runs/{runId:str}",
        operation_id="delete-run",
        summary="Delete an ended run and its log",
        description="409 while the run is pending or running: stop it first.",
        status_code=204,
        responses=api_problems(404, 409, 422),
    )
    async def delete_run(
        self, daemon: NamedDependency[Daemon], task_name_path: TaskNamePath, run_id: RunIdPath
    ) -> None:
        await daemon.delete_run(task_name_path, run_id)

    @get(
        "/runs/summary",
        operation_id="runs-summary",
        summary="Count runs by outcome; the latest failure",
        description=(
            "`total` counts every run; `success` those that ended success; `failed` those "
            "that ended failed, timeout, crashed or log_overflow (stopped and skipped runs are "
            "neither). `last_failure` is the failed run with the latest end, omitted if none."
        ),
        responses=api_problems(),
    )
    async def runs_summary(
        self, request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
    ) -> schemas.RunsSummaryBody:
        summary = await daemon.summarize_runs()
        last = summary.last_failure
        return schemas.RunsSummaryBody(
            schema=schema_url(request, "RunsSummaryBody"),
            total=summary.total,
            success=summary.success,
            failed=summary.failed,
            last_failure=presenters.one_run(request, last) if last is not None else UNSET,
        )
