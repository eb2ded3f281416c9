"""Runs: the seed's listing, one run, stopping a run."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency

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
from app.openapi import problems
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
        responses=problems(422),
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
        return presenters.run_page(request, list(page.runs), page.total)

    @get(
        "/runs",
        operation_id="list-runs",
        summary="List runs of every task",
        responses=problems(422),
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
        return presenters.run_page(request, list(page.runs), page.total)

    @get(
        "/tasks/{taskName:str}/runs/{runId:str}",
        operation_id="get-task-run",
        summary="Get one run of a task",
        responses=problems(404, 422),
    )
    async def get_task_run(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
    ) -> schemas.Run:
        return presenters.one_run(request, await daemon.get_run(run_id, task_name_path))

    @get(
        "/runs/{runId:str}",
        operation_id="get-run",
        summary="Get one run",
        responses=problems(404, 422),
    )
    async def get_run(
        self, request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], run_id: RunIdPath
    ) -> schemas.Run:
        return presenters.one_run(request, await daemon.get_run(run_id))

    @post(
        "/tasks/{taskName:str}/runs/{runId:str}/stop",
        operation_id="stop-run",
        summary="Stop a pending or running run",
        status_code=200,
        responses=problems(404, 409, 422),
    )
    async def stop_run(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
    ) -> schemas.MessageBody:
        run = await daemon.stop_run(task_name_path, run_id)
        return schemas.MessageBody(
            schema=schema_url(request, "MessageBody"),
            message=f"run {run.id} stopped ({run.end_reason or run.status})",
        )
