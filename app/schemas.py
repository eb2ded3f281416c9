"""Wire types, named as in the contract; every object carries ``$schema``.

Optional fields default to ``UNSET`` so that they are omitted, never ``null``, and their
JSON Schema does not admit ``null`` either.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

RunStatusName = Literal["pending", "running", "ended"]
EndReasonName = Literal[
    "success", "failed", "stopped", "timeout", "crashed", "skipped", "log_overflow"
]
TriggeredByName = Literal["cron", "api", "cloud"]

SCHEMA_DOC = "A URL to the JSON Schema for this object."
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
SchemaUrl = Annotated[
    str, msgspec.Meta(description=SCHEMA_DOC, extra_json_schema={"format": "uri"})
]


class Run(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One execution attempt of a task."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    id: str
    task_name: str
    status: Annotated[RunStatusName, msgspec.Meta(description="Run lifecycle phase")]
    end_reason: (
        Annotated[
            EndReasonName, msgspec.Meta(description="Why the run ended (set when status=ended)")
        ]
        | UnsetType
    ) = UNSET
    exit_code: int
    start_at: Timestamp | UnsetType = UNSET
    end_at: Timestamp | UnsetType = UNSET
    created_at: Timestamp
    triggered_by: Annotated[TriggeredByName, msgspec.Meta(description="How the run was triggered")]
    replica_index: int
    retry_attempt: int
    retry_of_run_id: str | UnsetType = UNSET
    external_execution_id: str | UnsetType = UNSET


class RunsResponseBody(msgspec.Struct, kw_only=True):
    """A page of runs and the number of runs matching the filters."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    runs: Annotated[list[Run], msgspec.Meta(description="List of runs")]
    total: Annotated[int, msgspec.Meta(description="Total matching runs")]


class ErrorDetail(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One invalid input."""

    location: str | UnsetType = UNSET
    message: str | UnsetType = UNSET
    value: Any = None


class ErrorModel(msgspec.Struct, omit_defaults=True, kw_only=True):
    """An RFC 9457 problem."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    type: str
    title: str
    status: int
    detail: str
    instance: str | UnsetType = UNSET
    errors: list[ErrorDetail] | UnsetType = UNSET
    run_id: str | UnsetType = UNSET


class Task(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A configured task or service, with its settings and next scheduled run."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    name: str
    kind: Literal["task", "service"]
    run: str
    description: str | UnsetType = UNSET
    group: str | UnsetType = UNSET
    cron: str | UnsetType = UNSET
    timezone: str
    timeout_seconds: float | UnsetType = UNSET
    working_dir: str | UnsetType = UNSET
    api_trigger: bool
    max_concurrent: int
    on_overlap: Literal["queue", "skip", "terminate"]
    next_run_at: Timestamp | UnsetType = UNSET


class TasksResponseBody(msgspec.Struct, kw_only=True):
    """Every configured task and service."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    tasks: list[Task]


class TriggerBody(msgspec.Struct, omit_defaults=True, kw_only=True, forbid_unknown_fields=True):
    """Optional body of a trigger: an orchestrator's id makes it a ``cloud`` trigger."""

    external_execution_id: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | UnsetType
    ) = UNSET


class MessageBody(msgspec.Struct, kw_only=True):
    """A plain acknowledgement."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    message: str


WIRE_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.__name__: cls
    for cls in (Run, RunsResponseBody, ErrorModel, Task, TasksResponseBody, MessageBody)
}
