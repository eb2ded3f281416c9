"""Tasks: the configured tasks and services, and triggering a run."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

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
        data: JSONBody[schemas.TriggerBody | None] = None,
    ) -> Response[schemas.Run]:
        external_id = data.external_execution_id if data else None
        run, created = await daemon.trigger(task_name_path, external_id or None)
        return Response(presenters.one_run(request, run), status_code=201 if created else 200)

    @post(
        "/{taskName:str}/restart",
        operation_id="restart-service",
        summary="Restart every instance of a service",
        status_code=200,
        responses=problems(400, 404, 422),
    )
    async def restart_service(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.MessageBody:
        count = await daemon.restart_service(task_name_path)
        return schemas.MessageBody(
            schema=schema_url(request, "MessageBody"),
            message=f"service {task_name_path} restarted with {count} instances",
        )

    @post(
        "/{taskName:str}/stop",
        operation_id="stop-service",
        summary="Stop every instance of a service until it is restarted",
        status_code=200,
        responses=problems(400, 404, 422),
    )
    async def stop_service(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.MessageBody:
        await daemon.stop_service(task_name_path)
        return schemas.MessageBody(
            schema=schema_url(request, "MessageBody"),
            message=f"service {task_name_path} stopped; POST .../restart starts it again",
        )
