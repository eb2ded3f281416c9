"""``GET /api/runs/stream``: run lifecycle events as server-sent events."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.params import SkipValidation
from litestar.response import Stream

from app import events, schemas
from app.controllers.params import TaskNameQuery
from app.openapi import api_problems, event_stream_response
from app.urls import schema_url
from domain.ports import RunEventSource

DESCRIPTION = f"""\
Every run lifecycle change of every daemon sharing the database, as it is committed.

Events (`event:`), each with an `id:` unique within the stream and `data:` the `Run` as it
was right after the change:
- `run.created`: recorded (pending, or directly running/ended; then the matching event
  below follows at once);
- `run.started`: pending -> running;
- `run.completed`: ended with end reason `success`;
- `run.failed`: ended with any other end reason (`failed`, `stopped`, `timeout`,
  `crashed`, `skipped`, `log_overflow`); a skipped trigger gives `run.created` then
  `run.failed`;
- `run.deleted`: removed (by `DELETE` or retention); `data` is the run as it was.

`task_name` keeps one task's events. A `: connected` comment comes first, a
`: keep-alive` comment after {events.DEFAULT_KEEPALIVE:g} s of silence. No replay
(`Last-Event-ID` is ignored): to have the whole picture, open the stream, wait for
`: connected`, then list `GET /api/runs`, and do the same after a reconnect; a change made
just before may then show in both, so apply events by run id. A client that
falls more than 1000 events behind, or every client when the daemon's database feed is
interrupted, is sent `: disconnected: <why>` and the stream ends. At most
{events.DEFAULT_MAX_STREAMS} streams are open at once; beyond that 503 with Retry-After."""


class RunEventController(Controller):
    """The live feed of run lifecycle events."""

    path = "/api"
    tags = ["runs"]

    @get(
        "/runs/stream",
        operation_id="stream-run-events",
        summary="Follow run lifecycle events (server-sent events)",
        description=DESCRIPTION,
        media_type="text/event-stream",
        responses={
            **event_stream_response(schemas.Run),
            **api_problems(422),
        },
    )
    async def stream_run_events(
        self,
        request: Request[Any, Any, Any],
        # A Protocol: msgspec cannot isinstance-check it.
        run_events: NamedDependency[SkipValidation[RunEventSource]],
        task_name: TaskNameQuery = None,
    ) -> Stream:
        if run_events.subscribers >= events.max_streams():
            raise ServiceUnavailableException(
                detail="too many open event streams; close some or retry later",
                headers={"Retry-After": str(events.RETRY_AFTER_SECONDS)},
            )
        # Raises StoreUnavailable (503) while the daemon is not listening to the database.
        subscription = run_events.subscribe(task_name or None)
        chunks = events.sse_stream(
            subscription, schema_url(request, "Run"), events.keepalive_interval()
        )
        return Stream(
            chunks,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
