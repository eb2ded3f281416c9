"""The run listing: its query, its filters and the one ordering rule every store obeys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from domain.errors import InvalidFilter
from domain.run import EndReason, Run, RunStatus, TriggeredBy

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
MAX_SEARCH_LENGTH = 100
TASK_NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"
TASK_NAME_MAX_LENGTH = 100


class SortField(StrEnum):
    """Fields the listing can sort by; ``NONE`` means the default (``created_at`` desc)."""

    TASK_NAME = "task_name"
    STATUS = "status"
    START_AT = "start_at"
    EXIT_CODE = "exit_code"
    DURATION = "duration"
    CREATED_AT = "created_at"
    NONE = ""


class SortDirection(StrEnum):
    """Sort direction; ``NONE`` means descending."""

    ASC = "asc"
    DESC = "desc"
    NONE = ""


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """Runs match when their phase is in ``phases`` or their end reason in ``end_reasons``."""

    phases: frozenset[RunStatus] = frozenset()
    end_reasons: frozenset[EndReason] = frozenset()

    def matches(self, run: Run) -> bool:
        return run.status in self.phases or (
            run.end_reason is not None and run.end_reason in self.end_reasons
        )


def parse_status_filter(raw: str | None) -> StatusFilter | None:
    """Parse ``status``: a phase or an end reason, or a comma-separated list of them.

    Blank means no filter. An unknown value raises :class:`InvalidFilter`.
    """
    if raw is None or not raw.strip():
        return None
    phases: set[RunStatus] = set()
    reasons: set[EndReason] = set()
    for part in raw.split(","):
        value = part.strip()
        if value in RunStatus.__members__.values():
            phases.add(RunStatus(value))
        elif value in EndReason.__members__.values():
            reasons.add(EndReason(value))
        else:
            known = ", ".join([*RunStatus, *EndReason])
            raise InvalidFilter(
                "status", raw, f"unknown status {value!r}; use one or more of: {known}"
            )
    return StatusFilter(frozenset(phases), frozenset(reasons))


@dataclass(frozen=True, slots=True)
class RunQuery:
    """One page of the listing. ``task_name`` None means every task."""

    task_name: str | None = None
    status: StatusFilter | None = None
    search: str | None = None
    sort_field: SortField = SortField.NONE
    sort_direction: SortDirection = SortDirection.NONE
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @property
    def effective_field(self) -> SortField:
        return SortField.CREATED_AT if self.sort_field is SortField.NONE else self.sort_field

    @property
    def descending(self) -> bool:
        return self.sort_direction is not SortDirection.ASC


class ListedRun(NamedTuple):
    """A run as a listing shows it: what is recorded of it, without :class:`Run`'s rules.

    A read model: listings make up to a thousand per request, and a tuple costs a third of
    a ``Run`` to make. The process id and ``not_before`` are the runtime's, not shown.
    """

    id: str
    task_name: str
    status: RunStatus
    end_reason: EndReason | None
    exit_code: int
    start_at: datetime | None
    end_at: datetime | None
    created_at: datetime
    triggered_by: TriggeredBy
    replica_index: int
    retry_attempt: int
    retry_of_run_id: str | None
    external_execution_id: str | None

    @classmethod
    def of(cls, run: Run) -> ListedRun:
        """The listing's view of ``run``."""
        return cls(
            run.id,
            run.task_name,
            run.status,
            run.end_reason,
            run.exit_code,
            run.start_at,
            run.end_at,
            run.created_at,
            run.triggered_by,
            run.replica_index,
            run.retry_attempt,
            run.retry_of_run_id,
            run.external_execution_id,
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """A window of matching runs and how many match in all."""

    runs: Sequence[ListedRun] = field(default_factory=list)
    total: int = 0


def sort_value(run: Run, sort_field: SortField) -> str | int | float | datetime:
    """The value a run sorts by; ties always break on ``id`` in the same direction.

    ``start_at`` falls back to ``created_at`` for runs that never started; ``duration`` is
    0 for runs that have not ended. This is the reference every store must agree with.
    """
    match sort_field:
        case SortField.TASK_NAME:
            return run.task_name
        case SortField.STATUS:
            return run.status.value
        case SortField.START_AT:
            return run.start_at or run.created_at
        case SortField.EXIT_CODE:
            return run.exit_code
        case SortField.DURATION:
            return run.duration_seconds
        case _:
            return run.created_at


def matches(run: Run, query: RunQuery) -> bool:
    """Whether a run passes the query's filters (task, status, search)."""
    if query.task_name is not None and run.task_name != query.task_name:
        return False
    if query.status is not None and not query.status.matches(run):
        return False
    if query.search:
        needle = query.search.lower()
        return needle in run.id.lower() or needle in run.task_name.lower()
    return True


def apply_query(runs: Sequence[Run], query: RunQuery) -> RunPage:
    """Filter, order and window runs in memory: the reference implementation."""
    found = [r for r in runs if matches(r, query)]
    key_field = query.effective_field
    found.sort(key=lambda r: (sort_value(r, key_field), r.id), reverse=query.descending)
    window = found[query.offset : query.offset + query.limit]
    return RunPage(runs=[ListedRun.of(r) for r in window], total=len(found))
