"""Parameters shared by the run listings, documented as the seed page documents them."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar.params import PathParameter, QueryParameter

from domain.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_SEARCH_LENGTH,
    TASK_NAME_MAX_LENGTH,
    TASK_NAME_PATTERN,
)
from domain.run import EndReason, RunStatus

TaskNamePath = Annotated[
    str,
    PathParameter(
        name="taskName",
        title="Task name",
        description="Task name",
        min_length=1,
        max_length=TASK_NAME_MAX_LENGTH,
        pattern=TASK_NAME_PATTERN,
    ),
]
RunIdPath = Annotated[
    str,
    PathParameter(name="runId", description="Run id (ULID)", min_length=1, max_length=100),
]
Limit = Annotated[
    int,
    QueryParameter(description="Max results per page", ge=1, le=MAX_LIMIT, format="int64"),
]
# Bounded to int64, what the database's OFFSET takes: a larger one was a 500.
Offset = Annotated[
    int, QueryParameter(description="Pagination offset", ge=0, le=2**63 - 1, format="int64")
]
_STATUS_WORD = "(?:" + "|".join([*RunStatus, *EndReason]) + ")"
STATUS_PATTERN = rf"^\s*(?:{_STATUS_WORD}\s*(?:,\s*{_STATUS_WORD}\s*)*)?$"
"""A phase or an end reason, or a comma-separated list of them; blank means no filter."""

StatusParam = Annotated[
    str | None,
    QueryParameter(
        description=(
            "Filter by run status: a phase (pending, running, ended) or an end reason "
            "(success, failed, stopped, timeout, crashed, skipped, log_overflow), "
            "or a comma-separated list of them"
        ),
        # In the document only: parse_status_filter validates, naming the unknown word.
        schema_extra={"pattern": STATUS_PATTERN},
    ),
]
TaskNameQuery = Annotated[str | None, QueryParameter(description="Filter by task name")]
SortFieldParam = Annotated[
    Literal["task_name", "status", "start_at", "exit_code", "duration", "created_at", ""],
    QueryParameter(description="Field to sort by"),
]
SortDirectionParam = Annotated[
    Literal["asc", "desc", ""], QueryParameter(description="Sort direction")
]
SearchParam = Annotated[
    str | None,
    QueryParameter(
        description="Search query: a case-insensitive substring of the run id or task name",
        max_length=MAX_SEARCH_LENGTH,
    ),
]
__all__ = [
    "DEFAULT_LIMIT",
    "Limit",
    "Offset",
    "RunIdPath",
    "SearchParam",
    "SortDirectionParam",
    "SortFieldParam",
    "StatusParam",
    "TaskNamePath",
    "TaskNameQuery",
]
