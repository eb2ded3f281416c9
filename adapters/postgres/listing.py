"""The run listing as SQL: filters, order and window of ``domain.listing.apply_query``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from adapters.postgres.tables import RUN_COLUMNS, run_counts, runs
from domain.listing import RunQuery, SortField, StatusFilter

_SORT_COLUMNS: dict[SortField, sa.ColumnElement[Any]] = {
    SortField.TASK_NAME: runs.c.task_name,
    SortField.STATUS: runs.c.status,
    SortField.START_AT: runs.c.sort_start_at,
    SortField.EXIT_CODE: runs.c.exit_code,
    SortField.DURATION: runs.c.duration,
    SortField.CREATED_AT: runs.c.created_at,
}

_ESCAPE = "\\"


def like_pattern(needle: str) -> str:
    """``%needle%`` with LIKE's wildcards and the escape character taken literally."""
    escaped = (
        needle.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    )
    return f"%{escaped}%"


def _status_condition(
    status: StatusFilter, phase: sa.ColumnElement[Any], reason: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    parts: list[sa.ColumnElement[bool]] = []
    if status.phases:
        parts.append(phase.in_(sorted(p.value for p in status.phases)))
    if status.end_reasons:
        parts.append(reason.in_(sorted(r.value for r in status.end_reasons)))
    return sa.or_(*parts) if parts else sa.false()


def _filters(query: RunQuery) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if query.task_name is not None:
        conditions.append(runs.c.task_name == query.task_name)
    if query.status is not None:
        conditions.append(_status_condition(query.status, runs.c.status, runs.c.end_reason))
    if query.search:
        # Python lower-cases the needle and ILIKE folds the (ASCII) ids and names: the same
        # answer as ``needle.lower() in id.lower()``, and the trigram indexes serve ILIKE.
        pattern = like_pattern(query.search.lower())
        conditions.append(
            sa.or_(
                runs.c.id.ilike(pattern, escape=_ESCAPE),
                runs.c.task_name.ilike(pattern, escape=_ESCAPE),
            )
        )
    return conditions


def page_query(query: RunQuery) -> sa.Select[Any]:
    """The runs of one page, in the listing's order."""
    key = _SORT_COLUMNS[query.effective_field]
    order = (key.desc(), runs.c.id.desc()) if query.descending else (key.asc(), runs.c.id)
    return (
        sa.select(*RUN_COLUMNS)
        .where(*_filters(query))
        .order_by(*order)
        .limit(query.limit)
        .offset(query.offset)
    )


def total_query(query: RunQuery) -> sa.Select[Any]:
    """The number of runs that match, whatever the window."""
    if query.search:
        return sa.select(sa.func.count()).select_from(runs).where(*_filters(query))
    # Without a search every filter is a column of run_counts: sum the counters the trigger
    # keeps instead of counting up to a million rows.
    counted: list[sa.ColumnElement[bool]] = []
    if query.task_name is not None:
        counted.append(run_counts.c.task_name == query.task_name)
    if query.status is not None:
        counted.append(
            _status_condition(query.status, run_counts.c.status, run_counts.c.end_reason)
        )
    return sa.select(sa.func.coalesce(sa.func.sum(run_counts.c.n), 0)).where(*counted)
