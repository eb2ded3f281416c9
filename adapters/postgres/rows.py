"""The mapping between :class:`Run` values and rows of ``runs``."""

from __future__ import annotations

from typing import Any, Protocol

from domain.listing import ListedRun
from domain.run import EndReason, Run, RunStatus, TriggeredBy

# Dict lookups: calling the enum classes costs more than the rest of a row together.
_STATUSES = {status.value: status for status in RunStatus}
_REASONS: dict[str | None, EndReason | None] = {reason.value: reason for reason in EndReason}
_REASONS[None] = None
_TRIGGERS = {trigger.value: trigger for trigger in TriggeredBy}


class Row(Protocol):
    """A row by column name: SQLAlchemy's ``RowMapping`` or an asyncpg ``Record``."""

    def __getitem__(self, key: str, /) -> Any: ...


def to_row(run: Run) -> dict[str, Any]:
    """The column values that store ``run``."""
    return {
        "id": run.id,
        "task_name": run.task_name,
        "status": run.status.value,
        "end_reason": run.end_reason.value if run.end_reason is not None else None,
        "exit_code": run.exit_code,
        "start_at": run.start_at,
        "end_at": run.end_at,
        "created_at": run.created_at,
        "triggered_by": run.triggered_by.value,
        "replica_index": run.replica_index,
        "retry_attempt": run.retry_attempt,
        "retry_of_run_id": run.retry_of_run_id,
        "external_execution_id": run.external_execution_id,
        "pid": run.pid,
        "not_before": run.not_before,
        "node_id": run.node_id,
    }


def from_row(row: Row) -> Run:
    """The run a row of ``RUN_COLUMNS`` stores."""
    return Run(
        id=row["id"],
        task_name=row["task_name"],
        created_at=row["created_at"],
        triggered_by=_TRIGGERS[row["triggered_by"]],
        status=_STATUSES[row["status"]],
        end_reason=_REASONS[row["end_reason"]],
        exit_code=row["exit_code"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        replica_index=row["replica_index"],
        retry_attempt=row["retry_attempt"],
        retry_of_run_id=row["retry_of_run_id"],
        external_execution_id=row["external_execution_id"],
        pid=row["pid"],
        not_before=row["not_before"],
        node_id=_text_or_none(row["node_id"]),
    )


def _text_or_none(value: Any) -> str | None:
    # A uuid column comes back as a UUID from asyncpg, as text from JSON.
    return None if value is None else str(value)


def listed_from_row(row: tuple[Any, ...]) -> ListedRun:
    """The listed run a row of ``listing.LISTED_COLUMNS`` (``ListedRun``'s fields) stores."""
    # By position, one lookup per field: a page makes up to a thousand of these.
    return ListedRun(
        row[0],
        row[1],
        _STATUSES[row[2]],
        _REASONS[row[3]],
        row[4],
        row[5],
        row[6],
        row[7],
        _TRIGGERS[row[8]],
        row[9],
        row[10],
        row[11],
        row[12],
    )


def has_nul(value: str | None) -> bool:
    """Whether ``value`` holds NUL: PostgreSQL text cannot, so no stored id or name does."""
    return value is not None and "\x00" in value
