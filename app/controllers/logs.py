"""A run's log: a page of lines, the raw download, the live SSE follow."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream

from app import logstream, schemas
from app.controllers.params import RunIdPath, TaskNamePath
from app.daemon import Daemon
from app.errors import http_problem
from app.openapi import api_problems, event_stream_response
from app.urls import base_url, schema_url

MAX_PAGE_LIMIT = 10_000
DEFAULT_PAGE_LIMIT = 1000
DEFAULT_PAGE_FROM = -1000

FromParam = Annotated[
    int,
    QueryParameter(
        query="from",
        description=(
            "First line number to return; a negative value counts from the end (-1000: the "
            "last 1000 lines). A value below first_available starts at first_available; "
            "one past the end gives no lines."
        ),
        ge=-logstream.MAX_LINE_NUMBER,
        le=logstream.MAX_LINE_NUMBER,
        format="int64",
    ),
]
StreamFromParam = Annotated[
    int,
    QueryParameter(
        query="from",
        description=(
            "First line number to replay; a negative value counts from the end at connect "
            "time. Default 0: the first available line. Last-Event-ID, when sent, wins."
        ),
        ge=-logstream.MAX_LINE_NUMBER,
        le=logstream.MAX_LINE_NUMBER,
        format="int64",
    ),
]
PageLimit = Annotated[
    int,
    QueryParameter(description="Max lines to return", ge=1, le=MAX_PAGE_LIMIT, format="int64"),
]
LastEventId = Annotated[
    int | None,
    Parameter(
        header="Last-Event-ID",
        description=(
            "The id of the last event received (a line number): a reconnecting client "
            "resumes after it. Takes precedence over from."
        ),
        ge=-1,
        le=logstream.MAX_LINE_NUMBER,
        required=False,
    ),
]


# Python names of parameters whose wire names differ; Litestar reports the Python ones.
_WIRE_NAMES = {"from_": "from", "last_event_id": "Last-Event-ID"}


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _validation_problem(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[bytes]:
    """The house 422, with ``query.from`` and ``header.Last-Event-ID`` as locations."""
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict) and item.get("key") in _WIRE_NAMES:
            item["key"] = _WIRE_NAMES[item["key"]]
    return http_problem(request, exc)


class LogController(Controller):
    """Reading a run's output."""

    path = "/api/tasks/{taskName:str}/runs/{runId:str}/log"
    tags = ["logs"]
    exception_handlers = {ValidationException: _validation_problem}

    @get(
        "/",
        operation_id="get-run-log",
        summary="Get a page of a run's log",
        description=(
            "Lines are numbered from 0 over all streams of the run. `truncated` says that "
            "older lines were dropped (log_on_full = drop_old): first_available > 0. "
            "`finalized` says the run has ended and its whole output is stored."
        ),
        responses=api_problems(404, 422),
    )
    async def get_log(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
        from_: FromParam = DEFAULT_PAGE_FROM,
        limit: PageLimit = DEFAULT_PAGE_LIMIT,
    ) -> schemas.LogPage:
        run = await daemon.get_run(run_id, task_name_path)
        window = await logstream.read_window(daemon.logs, run, from_, limit)
        line_schema = schema_url(request, "LogLine")
        return schemas.LogPage(
            schema=schema_url(request, "LogPage"),
            lines=logstream.line_bodies(window.lines, line_schema),
            first_available=window.first_available,
            total_lines=window.total_lines,
            truncated=window.first_available > 0,
            finalized=window.finalized,
        )

    @get(
        "/raw",
        operation_id="get-run-log-raw",
        summary="Download a run's whole log as text",
        description="Every stored line, one per text line, as the log was when asked.",
        media_type="text/plain",
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="text/plain",
                description="The log text",
                generate_examples=False,
            ),
            **api_problems(404, 422),
        },
    )
    async def get_log_raw(
        self,
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
    ) -> Stream:
        run = await daemon.get_run(run_id, task_name_path)
        _, total = await daemon.logs.stats(run.id)
        return Stream(
            logstream.raw_chunks(daemon.logs, run.id, total),
            media_type="text/plain",
            headers={"Content-Disposition": f'inline; filename="{run.id}.log"'},
        )

    @get(
        "/stream",
        operation_id="stream-run-log",
        summary="Follow a run's log live (server-sent events)",
        description=(
            "Replays from Last-Event-ID + 1, else from `from`, else from the first available "
            "line, then follows new output. Events: `line` (id = line number, data = "
            '{"n","ts","stream","text"}), then once the run has ended and every line was '
            'sent, one `done` (data = {"final_line","status"}) and the stream closes. '
            "A `: keep-alive` comment comes after 15 s of silence. At most "
            f"{logstream.PER_CLIENT_STREAMS} streams per client address and "
            f"{logstream.TOTAL_STREAMS} in all; beyond that 503 with Retry-After."
        ),
        media_type="text/event-stream",
        responses={
            **event_stream_response(schemas.LogLine, schemas.LogStreamDone),
            **api_problems(404, 422),
        },
    )
    async def stream_log(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        task_name_path: TaskNamePath,
        run_id: RunIdPath,
        from_: StreamFromParam = 0,
        last_event_id: LastEventId = None,
    ) -> Stream:
        run = await daemon.get_run(run_id, task_name_path)
        if last_event_id is not None:
            # The browser's reconnect: it knows exactly what it has seen.
            start = last_event_id + 1
        elif from_ < 0:
            _, total = await daemon.logs.stats(run.id)
            start = max(total + from_, 0)
        else:
            start = from_
        lease = logstream.LIMITER.acquire(_client(request))
        if lease is None:
            raise ServiceUnavailableException(
                detail="too many open log streams; close some or retry later",
                headers={"Retry-After": str(logstream.RETRY_AFTER_SECONDS)},
            )
        events = lease.bind(
            logstream.follow(
                daemon.repo,
                daemon.logs,
                run.id,
                start,
                lease,
                keepalive=logstream.keepalive_interval(),
                base_url=base_url(request),
            )
        )
        return Stream(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
