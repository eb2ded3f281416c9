"""Tasks: the configured tasks and services, and triggering a run."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency

from app import presenters, schemas
from app.controllers.params import TaskNamePath
from app.daemon import Daemon
from app.openapi import problems
from app.urls import schema_url


class TaskController(Controller):
    """What runwarden is configured to run."""

    path = "/api/tasks"
    tags = ["tasks"]

    @get("/", operation_id="list-tasks", summary="List tasks and services")
    async def list_tasks(
        self, request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
    ) -> schemas.TasksResponseBody:
        task_schema = schema_url(request, "Task")
        return schemas.TasksResponseBody(
            schema=schema_url(request, "TasksResponseBody"),
            tasks=[
                presenters.task_body(task, task_schema, daemon.next_run_at(task.name))
                for task in sorted(daemon.tasks.values(), key=lambda t: t.name)
            ],
        )

    @get(
        "/{taskName:str}",
        operation_id="get-task",
        summary="Get one task or service",
        responses=problems(404, 422),
    )
    async def get_task(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.Task:
        task = daemon.task(task_name_path)
        return presenters.task_body(
            task, schema_url(request, "Task"), daemon.next_run_at(task.name)
        )

    @post(
        "/{taskName:str}/run",
        operation_id="trigger-task",
        summary="Trigger a run now",
        status_code=201,
        responses=problems(403, 404, 409, 422),
    )
    async def trigger(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.Run:
        return presenters.one_run(request, await daemon.trigger(task_name_path))
