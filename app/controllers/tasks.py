"""Tasks: the configured tasks and services, and triggering a run."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from app import presenters, schemas
from app.controllers.params import TaskNamePath
from app.daemon import Daemon
from app.openapi import api_problems
from app.urls import schema_url
from domain.run import RunStatus

WAIT_HEADER = "X-Runwarden-Wait"
DEFAULT_WAIT_TIMEOUT = 300
MAX_WAIT_TIMEOUT = 3600

WaitParam = Annotated[
    bool, QueryParameter(description="Answer once the run has ended (or wait_timeout passed)")
]
WaitTimeoutParam = Annotated[
    int,
    QueryParameter(
        description="With wait=true: seconds to wait at most for the run to end",
        ge=1,
        le=MAX_WAIT_TIMEOUT,
        format="int64",
    ),
]
TRIGGER_DOC = """\
Records a run under the task's overlap policy and answers 201 with it, pending.

With a body `{"external_execution_id": "..."}` it is a `cloud` trigger, idempotent on that
id: a repeat answers 200 with the run the first one created (never retried locally).

With `wait=true` the answer comes once the run has ended, or after `wait_timeout` seconds
(1-3600, default 300) with the run as it is then; the status code is the same either way
(201 new, 200 repeat) and the header `X-Runwarden-Wait` says `ended` or `timeout`. It
waits for this attempt, not for retries it may cause (their `retry_of_run_id` names it).

403 if the task has `api_trigger = false`; 409 for a service, or when the overlap policy
turned the trigger away (the `skipped` run is recorded; the problem's `run_id` names it).
"""


class TaskController(Controller):
    """What runwarden is configured to run."""

    path = "/api/tasks"
    tags = ["tasks"]

    @get(
        "/",
        operation_id="list-tasks",
        summary="List tasks and services",
        responses=api_problems(database=False),
    )
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
        responses=api_problems(404, 422, database=False),
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
        description=TRIGGER_DOC,
        status_code=201,
        response_headers=[
            ResponseHeader(
                name=WAIT_HEADER,
                description="With wait=true: `ended` if the run has ended, `timeout` if "
                "wait_timeout passed first (the run is then pending or running)",
                documentation_only=True,
            )
        ],
        responses={
            200: ResponseSpec(
                data_container=schemas.Run,
                description="A repeated cloud trigger: the run the first one created",
            ),
            **api_problems(400, 403, 404, 409, 413, 422),
        },
    )
    async def trigger(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        data: JSONBody[schemas.TriggerBody | None] = None,
        wait: WaitParam = False,
        wait_timeout: WaitTimeoutParam = DEFAULT_WAIT_TIMEOUT,
    ) -> Response[schemas.Run]:
        external_id = data.external_execution_id if data else None
        run, created = await daemon.trigger(task_name_path, external_id or None)
        headers = {}
        if wait:
            run = await daemon.wait_for_end(run, wait_timeout)
            headers[WAIT_HEADER] = "ended" if run.status is RunStatus.ENDED else "timeout"
        return Response(
            presenters.one_run(request, run),
            status_code=201 if created else 200,
            headers=headers,
        )

    @post(
        "/{taskName:str}/restart",
        operation_id="restart-service",
        summary="Restart every instance of a service",
        description="400 if the name is a task, not a service.",
        status_code=200,
        responses=api_problems(400, 404, 422),
    )
    async def restart_service(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.MessageBody:
        count = await daemon.restart_service(task_name_path)
        return presenters.message_body(
            request, f"service {task_name_path} restarted with {count} instances"
        )

    @post(
        "/{taskName:str}/stop",
        operation_id="stop-service",
        summary="Stop every instance of a service until it is restarted",
        description="400 if the name is a task, not a service.",
        status_code=200,
        responses=api_problems(400, 404, 422),
    )
    async def stop_service(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
    ) -> schemas.MessageBody:
        await daemon.stop_service(task_name_path)
        return presenters.message_body(
            request, f"service {task_name_path} stopped; POST .../restart starts it again"
        )
