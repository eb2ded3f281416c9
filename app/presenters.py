"""Domain values to wire types."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar.connection import ASGIConnection
from msgspec import UNSET, UnsetType

from app import schemas
from app.urls import schema_url
from domain.listing import ListedRun
from domain.run import Run
from domain.tasks import TaskSpec

T = TypeVar("T")

_encode_json = msgspec.json.encode
_WHOLE_SECOND_LENGTH = len(b'"2026-11-29T10:00:00Z"')


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and microseconds."""
    if value.tzinfo is not UTC:  # the driver's values already are: no conversion for them
        value = value.astimezone(UTC)
    # msgspec's encoder writes the same text (quoted) about 5x faster than strftime or
    # isoformat, but leaves out a fraction of zero: a listing formats 150 of these a page.
    text = _encode_json(value)
    if len(text) > _WHOLE_SECOND_LENGTH:
        return text[1:-1].decode()
    return text[1:-2].decode() + ".000000Z"


def _optional_ts(value: datetime | None) -> str | UnsetType:
    return timestamp(value) if value is not None else UNSET


def _opt(value: T | None) -> T | UnsetType:
    return UNSET if value is None else value


def run_body(run: Run | ListedRun, schema: str) -> schemas.Run:
    # Inlined rather than through _opt/_optional_ts: listings call this for every row.
    # Status, end reason and trigger are StrEnums, so they encode as their values.
    start_at, end_at, reason = run.start_at, run.end_at, run.end_reason
    retry_of, external = run.retry_of_run_id, run.external_execution_id
    return schemas.Run(
        schema=schema,
        id=run.id,
        task_name=run.task_name,
        status=run.status,  # type: ignore[arg-type]
        end_reason=UNSET if reason is None else reason,  # type: ignore[arg-type]
        exit_code=run.exit_code,
        start_at=UNSET if start_at is None else timestamp(start_at),
        end_at=UNSET if end_at is None else timestamp(end_at),
        created_at=timestamp(run.created_at),
        triggered_by=run.triggered_by,  # type: ignore[arg-type]
        replica_index=run.replica_index,
        retry_attempt=run.retry_attempt,
        retry_of_run_id=UNSET if retry_of is None else retry_of,
        external_execution_id=UNSET if external is None else external,
    )


def message_body(connection: ASGIConnection[Any, Any, Any, Any], text: str) -> schemas.MessageBody:
    """A ``{"message"}`` answer."""
    return schemas.MessageBody(schema=schema_url(connection, "MessageBody"), message=text)


def one_run(connection: ASGIConnection[Any, Any, Any, Any], run: Run) -> schemas.Run:
    return run_body(run, schema_url(connection, "Run"))


def run_detail(
    connection: ASGIConnection[Any, Any, Any, Any], run: Run, notifications: int
) -> schemas.RunDetail:
    """One run with how many notifications it caused."""
    body = run_body(run, schema_url(connection, "RunDetail"))
    return schemas.RunDetail(**msgspec.structs.asdict(body), notifications=notifications)


def run_page(
    connection: ASGIConnection[Any, Any, Any, Any], runs: Sequence[ListedRun], total: int
) -> schemas.RunsResponseBody:
    run_schema = schema_url(connection, "Run")
    return schemas.RunsResponseBody(
        schema=schema_url(connection, "RunsResponseBody"),
        runs=[run_body(r, run_schema) for r in runs],
        total=total,
    )


def task_body(task: TaskSpec, schema: str, next_run_at: datetime | None) -> schemas.Task:
    return schemas.Task(
        schema=schema,
        name=task.name,
        kind=task.kind.value,
        run=task.written.get("run", task.run),
        description=_opt(task.written.get("description", task.description)),
        group=_opt(task.written.get("group", task.group)),
        cron=_opt(task.cron),
        timezone=task.timezone,
        timeout_seconds=_opt(task.timeout),
        working_dir=_opt(task.written.get("working_dir", task.working_dir)),
        api_trigger=task.api_trigger,
        max_concurrent=task.max_concurrent,
        on_overlap=task.on_overlap.value,
        next_run_at=_optional_ts(next_run_at),
    )
