"""The run-history table's state as the URL carries it: filters, sorting, paging.

One :class:`RunFilters` per request, read from the query string with every error named (a
page shows them with a 400, never a 500), and written back into links: the sort headers,
the pager, the filter form. The task page and the runs page share it and the table macro.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from domain.errors import InvalidFilter
from domain.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_SEARCH_LENGTH,
    TASK_NAME_MAX_LENGTH,
    TASK_NAME_PATTERN,
    RunQuery,
    SortDirection,
    SortField,
    parse_status_filter,
)

SORTABLE = {f.value for f in SortField if f is not SortField.NONE}
PAGE_SIZES = (20, 50, 100, 200)


@dataclass(frozen=True, slots=True)
class RunFilters:
    """The listing's parameters as strings and ints, exactly as the URL says them."""

    status: str = ""
    search: str = ""
    sort_field: str = ""
    sort_direction: str = ""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    task_name: str = ""
    """Only the runs page filters by task (the task page's task is its path's)."""

    def query(self, task_name: str | None) -> RunQuery:
        """The listing query (the values were checked by :func:`parse_filters`); a
        ``task_name`` given here wins over the filter's."""
        return RunQuery(
            task_name=task_name or self.task_name or None,
            status=parse_status_filter(self.status),
            search=self.search or None,
            sort_field=SortField(self.sort_field),
            sort_direction=SortDirection(self.sort_direction),
            limit=self.limit,
            offset=self.offset,
        )

    def params(self, **changes: Any) -> str:
        """The query string of these filters with ``changes``; defaults are left out."""
        values = replace(self, **changes)
        pairs = [
            (key, value)
            for key, value, default in (
                ("task_name", values.task_name, ""),
                ("status", values.status, ""),
                ("search", values.search, ""),
                ("sort_field", values.sort_field, ""),
                ("sort_direction", values.sort_direction, ""),
                ("limit", values.limit, DEFAULT_LIMIT),
                ("offset", values.offset, 0),
            )
            if value != default
        ]
        return "?" + urlencode(pairs) if pairs else ""

    @property
    def field(self) -> str:
        return self.sort_field or SortField.CREATED_AT.value

    @property
    def descending(self) -> bool:
        return self.sort_direction != SortDirection.ASC.value

    def aria_sort(self, field: str) -> str:
        """``ascending``, ``descending`` or ``none`` for the header of ``field``."""
        if field != self.field:
            return "none"
        return "descending" if self.descending else "ascending"

    def sort_params(self, field: str) -> str:
        """The link of a header: descending first, then flips; back to the first page."""
        direction = "asc" if field == self.field and self.descending else "desc"
        return self.params(sort_field=field, sort_direction=direction, offset=0)


def _int(raw: str, name: str, low: int, high: int, errors: list[str]) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name} must be a whole number, not {raw[:40]!r}")
        return None
    if not low <= value <= high:
        errors.append(f"{name} must be between {low} and {high}, not {value}")
        return None
    return value


def parse_filters(params: Mapping[str, str]) -> tuple[RunFilters, list[str]]:
    """The filters of a query string, and what was wrong with it (empty when fine).

    A wrong value falls back to its default, so the page can still show its form.
    """
    errors: list[str] = []
    found = RunFilters()
    status = params.get("status", "").strip()
    if status:
        try:
            parse_status_filter(status)
            found = replace(found, status=status)
        except InvalidFilter as error:
            errors.append(error.message)
    search = params.get("search", "").strip()
    if len(search) > MAX_SEARCH_LENGTH:
        errors.append(f"search is at most {MAX_SEARCH_LENGTH} characters")
    elif search:
        found = replace(found, search=search)
    field = params.get("sort_field", "")
    if field and field not in SORTABLE:
        errors.append(f"sort_field {field[:40]!r} is not one of: {', '.join(sorted(SORTABLE))}")
    elif field:
        found = replace(found, sort_field=field)
    direction = params.get("sort_direction", "")
    if direction and direction not in ("asc", "desc"):
        errors.append(f"sort_direction {direction[:40]!r} is not asc or desc")
    elif direction:
        found = replace(found, sort_direction=direction)
    task_name = params.get("task_name", "").strip()
    if task_name and (
        len(task_name) > TASK_NAME_MAX_LENGTH or not re.match(TASK_NAME_PATTERN, task_name)
    ):
        errors.append(f"task_name {task_name[:40]!r} is not a task name ({TASK_NAME_PATTERN})")
    elif task_name:
        found = replace(found, task_name=task_name)
    raw = params.get("limit", "")
    if raw and (limit := _int(raw, "limit", 1, MAX_LIMIT, errors)) is not None:
        found = replace(found, limit=limit)
    raw = params.get("offset", "")
    if raw and (offset := _int(raw, "offset", 0, 10**12, errors)) is not None:
        found = replace(found, offset=offset)
    return found, errors


@dataclass(frozen=True, slots=True)
class Pager:
    """The pager's count ("1 to 50 of 12,345" with an en dash) and its links."""

    first: int
    last: int
    total: int
    prev: str | None
    next: str | None

    @property
    def text(self) -> str:
        if self.total == 0 or self.first > self.total:
            return f"0 of {self.total:,}"
        return f"{self.first:,}\u2013{self.last:,} of {self.total:,}"


def pager(filters: RunFilters, shown: int, total: int) -> Pager:
    """The pager of a page that shows ``shown`` rows of ``total``."""
    prev = None
    if filters.offset > 0:
        prev = filters.params(offset=max(filters.offset - filters.limit, 0))
    following = None
    if filters.offset + shown < total:
        following = filters.params(offset=filters.offset + filters.limit)
    return Pager(filters.offset + 1, filters.offset + shown, total, prev, following)


STATUS_CHOICES = [
    ("failed,timeout,crashed,log_overflow", "any failure"),
    ("pending,running", "active"),
    *((s, s.replace("_", " ")) for s in ("pending", "running", "ended")),
    *(
        (s, s.replace("_", " "))
        for s in ("success", "failed", "stopped", "timeout", "crashed", "skipped", "log_overflow")
    ),
]
"""The status filter's choices; any other comma list typed in the URL works too."""
