"""Parameters shared by the run listings, documented as the seed page documents them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.params import ParameterKwarg, PathParameter, QueryParameter
from litestar.typing import FieldDefinition

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
_PLAIN_INTEGER = re.compile(r"-?[0-9]+")
_INTEGER_MESSAGE = (
    "Expected a plain decimal integer such as 50 or -1000 (digits, optionally after -)"
)
_integer_queries: dict[Any, tuple[str, ...]] = {}


def _is_integer(field: FieldDefinition) -> bool:
    types = field.inner_types if field.is_optional else (field,)
    return any(t.is_subclass_of(int) and not t.is_subclass_of(bool) for t in types)


def _integer_query_names(handler: Any) -> tuple[str, ...]:
    """The wire names of a route handler's integer query parameters."""
    names = []
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if (
            isinstance(kwarg, ParameterKwarg)
            and not isinstance(kwarg, PathParameter)
            and kwarg.header is None
            and kwarg.cookie is None
            and _is_integer(field)
        ):
            names.append(kwarg.query or name)
    return tuple(names)


def refuse_loose_integers(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: an integer query parameter must be spelled as one.

    Litestar's lax parsing reads ``limit=1e3`` as 1000 and ``limit=1.0`` as 1; the seed's
    server answers 422 for anything but decimal digits (optionally after ``-``), and so do we.
    Leading ``+``, blanks, hex and leading zeros are already refused by the parser itself.
    """
    handler = request.route_handler
    names = _integer_queries.get(handler)
    if names is None:
        names = _integer_queries[handler] = _integer_query_names(handler)
    errors = [
        {"key": name, "source": "query", "message": _INTEGER_MESSAGE}
        for name in names
        if any(not _PLAIN_INTEGER.fullmatch(v) for v in request.query_params.getall(name, []))
    ]
    if errors:
        raise ValidationException(detail="validation failed", extra=errors)


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
    "refuse_loose_integers",
]
