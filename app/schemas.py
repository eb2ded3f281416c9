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


LogStreamName = Literal["stdout", "stderr", "system"]


class LogLine(msgspec.Struct, kw_only=True):
    """One line of a run's log (in a page, or the data of an SSE ``line`` event)."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    n: Annotated[int, msgspec.Meta(ge=0, description="Absolute line number, from 0")]
    ts: Timestamp
    stream: Annotated[LogStreamName, msgspec.Meta(description="Where the line came from")]
    text: str


class LogPage(msgspec.Struct, kw_only=True):
    """A window of a run's log."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    lines: list[LogLine]
    first_available: Annotated[
        int, msgspec.Meta(description="Number of the oldest line still stored")
    ]
    total_lines: Annotated[
        int, msgspec.Meta(description="Lines ever written; the next line gets this number")
    ]
    truncated: Annotated[
        bool,
        msgspec.Meta(
            description="Older lines were dropped under log_on_full = drop_old "
            "(first_available > 0)"
        ),
    ]
    finalized: Annotated[
        bool, msgspec.Meta(description="The run has ended and its whole output is stored")
    ]


WIRE_TYPES.update({cls.__name__: cls for cls in (LogLine, LogPage)})


class RunsSummaryBody(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Run counts over every task, and the latest failure.

    ``failed`` counts the end reasons ``failed``, ``timeout``, ``crashed`` and
    ``log_overflow``; ``stopped`` and ``skipped`` runs are neither success nor failure.
    """

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    total: Annotated[int, msgspec.Meta(ge=0, description="Every stored run, any status")]
    success: Annotated[int, msgspec.Meta(ge=0, description="Runs that ended success")]
    failed: Annotated[
        int,
        msgspec.Meta(ge=0, description="Runs that ended failed, timeout, crashed or log_overflow"),
    ]
    last_failure: (
        Annotated[Run, msgspec.Meta(description="The failed run that ended last")] | UnsetType
    ) = UNSET


class TaskBrief(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A task or service in a few words."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    name: str
    kind: Literal["task", "service"]
    cron: str | UnsetType = UNSET
    next_run_at: Timestamp | UnsetType = UNSET


class Info(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What this daemon is and how its scheduling is doing."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    version: Annotated[str, msgspec.Meta(description="runwarden's version")]
    timezone: Annotated[str, msgspec.Meta(description="The scheduler's IANA time zone")]
    started_at: Timestamp
    uptime_seconds: Annotated[float, msgspec.Meta(ge=0)]
    scheduler_alive: Annotated[bool, msgspec.Meta(description="The cron loop is running")]
    scheduler_heartbeat_at: (
        Annotated[Timestamp, msgspec.Meta(description="When the cron loop last woke up")]
        | UnsetType
    ) = UNSET
    queued_runs: Annotated[
        int, msgspec.Meta(ge=0, description="Runs waiting in this daemon's queue for a slot")
    ]
    tasks: list[TaskBrief]
    node_id: Annotated[str, msgspec.Meta(description="This daemon's id in the cluster")]


class Node(msgspec.Struct, kw_only=True):
    """One daemon of the cluster sharing the database."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    id: Annotated[str, msgspec.Meta(description="A fresh id for every start of a daemon")]
    host: Annotated[str, msgspec.Meta(description="The machine's host name")]
    pid: Annotated[int, msgspec.Meta(description="The daemon's process id on its host")]
    version: Annotated[str, msgspec.Meta(description="runwarden's version on that node")]
    started_at: Timestamp
    heartbeat_at: Annotated[
        Timestamp, msgspec.Meta(description="Its last heartbeat, on the database's clock")
    ]
    alive: Annotated[
        bool,
        msgspec.Meta(description="Heart-beating within the lease (false: dead or reaped)"),
    ]
    running_runs: Annotated[int, msgspec.Meta(ge=0, description="Runs its processes run")]
    config_hash: Annotated[
        str, msgspec.Meta(description="Hash of its loaded config file; differs on drift")
    ]


class ReloadBody(msgspec.Struct, kw_only=True):
    """What a reload of the config file changed on the node that received it."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    message: str
    config_hash: Annotated[str, msgspec.Meta(description="Hash of the config now loaded")]
    added: Annotated[list[str], msgspec.Meta(description="Tasks and services new to it")]
    removed: Annotated[list[str], msgspec.Meta(description="No longer configured")]
    changed: Annotated[list[str], msgspec.Meta(description="Configured differently")]


class NodesBody(msgspec.Struct, kw_only=True):
    """The nodes of the cluster, oldest first."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    nodes: list[Node]


WIRE_TYPES.update(
    {cls.__name__: cls for cls in (RunsSummaryBody, TaskBrief, Info, Node, NodesBody, ReloadBody)}
)


class LogStreamDone(msgspec.Struct, kw_only=True):
    """The data of the last event of a log stream."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    final_line: Annotated[int, msgspec.Meta(description="Last line number, -1 if none")]
    status: Annotated[str, msgspec.Meta(description="The run's end reason")]


WIRE_TYPES[LogStreamDone.__name__] = LogStreamDone


class RunDetail(Run, omit_defaults=True, kw_only=True):
    """One run, with how many notifications it caused (the single-run answers)."""

    notifications: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Notification deliveries this run caused (one per channel and "
            "event, held repeats included): GET /api/notifications?run_id=...",
        ),
    ]


DeliveryStatusName = Literal["pending", "sending", "delivered", "retrying", "dead", "suppressed"]
ChannelTypeName = Literal["webhook", "slack", "discord", "smtp", "apprise"]


class Notifier(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A configured notification channel; secrets are never shown."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    name: str
    type: ChannelTypeName
    on: Annotated[list[str], msgspec.Meta(description="Events that reach it (without run.)")]
    tasks: Annotated[list[str], msgspec.Meta(description="Glob patterns of task names")]
    timeout_seconds: float
    url: (
        Annotated[str, msgspec.Meta(description="Scheme and host only: the rest may be a key")]
        | UnsetType
    ) = UNSET
    header_names: Annotated[list[str], msgspec.Meta(description="Header values are hidden")] = []
    signed: Annotated[bool, msgspec.Meta(description="A secret signs its webhooks")] = False
    host: str | UnsetType = UNSET
    port: int | UnsetType = UNSET
    tls: Literal["none", "starttls", "tls"] | UnsetType = UNSET
    sender: Annotated[str, msgspec.Meta(description="The from address")] | UnsetType = UNSET
    to: list[str] | UnsetType = UNSET
    last_success_at: Timestamp | UnsetType = UNSET
    last_failure_at: Timestamp | UnsetType = UNSET
    last_error: Annotated[str, msgspec.Meta(description="Secrets redacted")] | UnsetType = UNSET
    pending: Annotated[int, msgspec.Meta(ge=0, description="Deliveries waiting")] = 0
    dead: Annotated[int, msgspec.Meta(ge=0, description="Deliveries given up")] = 0


class NotifiersBody(msgspec.Struct, kw_only=True):
    """The configured channels, by name."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    notifiers: list[Notifier]


class NotificationAttempt(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One try of a delivery."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    n: Annotated[int, msgspec.Meta(ge=1, description="The try's number, from 1")]
    at: Timestamp
    outcome: Literal["delivered", "retry", "dead"]
    status_code: (
        Annotated[int, msgspec.Meta(description="The receiver's HTTP (or SMTP) status")] | UnsetType
    ) = UNSET
    error: Annotated[str, msgspec.Meta(description="Secrets redacted")] | UnsetType = UNSET
    duration_ms: Annotated[int, msgspec.Meta(ge=0)]


class Notification(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One event to one channel: a delivery of the outbox."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    id: Annotated[str, msgspec.Meta(description="Also the webhook-id of every try")]
    type: Annotated[str, msgspec.Meta(description="run.<end_reason>, run.recovered, ...")]
    channel: str
    status: DeliveryStatusName
    created_at: Timestamp
    task_name: str | UnsetType = UNSET
    run_id: str | UnsetType = UNSET
    count: Annotated[int, msgspec.Meta(ge=1, description="Events this message stands for")]
    attempt_count: Annotated[int, msgspec.Meta(ge=0, description="Tries so far")]
    next_attempt_at: (
        Annotated[Timestamp, msgspec.Meta(description="When it is tried next (or its lease ends)")]
        | UnsetType
    ) = UNSET
    delivered_at: Timestamp | UnsetType = UNSET
    last_attempt_at: Timestamp | UnsetType = UNSET
    last_status_code: int | UnsetType = UNSET
    last_error: Annotated[str, msgspec.Meta(description="Secrets redacted")] | UnsetType = UNSET
    data: Annotated[
        dict[str, Any], msgspec.Meta(description="The event's facts (the webhook's data)")
    ]
    attempts: (
        Annotated[
            list[NotificationAttempt],
            msgspec.Meta(description="Every try, oldest first (GET of one notification)"),
        ]
        | UnsetType
    ) = UNSET


class NotificationsBody(msgspec.Struct, kw_only=True):
    """A page of deliveries, newest first, and the number of every match."""

    schema: SchemaUrl = msgspec.field(name="$schema", default="")
    notifications: list[Notification]
    total: int


WIRE_TYPES.update(
    {
        cls.__name__: cls
        for cls in (
            RunDetail,
            Notifier,
            NotifiersBody,
            NotificationAttempt,
            Notification,
            NotificationsBody,
        )
    }
)
