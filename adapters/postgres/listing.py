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


DEFERRED_JOIN_OFFSET = 1000
"""From this offset on, a page without search or status filter finds its ids first."""


def page_query(query: RunQuery) -> sa.Select[Any]:
    """The runs of one page, in the listing's order.

    A big OFFSET reads and discards that many rows. Without a search or a status filter,
    ``(task_name,) key, id`` indexes cover the ids' query, so it skips them in an index-only
    scan and only the page's rows are fetched from the table (a deferred join).
    """
    key = _SORT_COLUMNS[query.effective_field]
    order = (key.desc(), runs.c.id.desc()) if query.descending else (key.asc(), runs.c.id)
    if query.offset < DEFERRED_JOIN_OFFSET or query.search or query.status is not None:
        return (
            sa.select(*RUN_COLUMNS)
            .where(*_filters(query))
            .order_by(*order)
            .limit(query.limit)
            .offset(query.offset)
        )
    ids = (
        sa.select(runs.c.id)
        .where(*_filters(query))
        .order_by(*order)
        .limit(query.limit)
        .offset(query.offset)
        .subquery("page_ids")
    )
    return sa.select(*RUN_COLUMNS).join_from(runs, ids, runs.c.id == ids.c.id).order_by(*order)


def _counted(query: RunQuery) -> list[sa.ColumnElement[bool]]:
    counted: list[sa.ColumnElement[bool]] = []
    if query.task_name is not None:
        counted.append(run_counts.c.task_name == query.task_name)
    if query.status is not None:
        counted.append(
            _status_condition(query.status, run_counts.c.status, run_counts.c.end_reason)
        )
    return counted


def total_query(query: RunQuery) -> sa.Select[Any]:
    """The number of runs that match, whatever the window."""
    # Every filter but search is a column of run_counts: sum the counters the trigger keeps
    # instead of counting up to a million rows.
    if not query.search:
        return sa.select(sa.func.coalesce(sa.func.sum(run_counts.c.n), 0)).where(*_counted(query))
    # A search matches every run of a task whose name matches, so those are counted from
    # the counters too; only runs matched by their id alone are counted row by row, and
    # the trigram index on id finds few of them. The two sets do not overlap.
    pattern = like_pattern(query.search.lower())
    by_name = sa.select(sa.func.coalesce(sa.func.sum(run_counts.c.n), 0)).where(
        *_counted(query), run_counts.c.task_name.ilike(pattern, escape=_ESCAPE)
    )
    plain = RunQuery(task_name=query.task_name, status=query.status)
    by_id = (
        sa.select(sa.func.count())
        .select_from(runs)
        .where(
            *_filters(plain),
            runs.c.id.ilike(pattern, escape=_ESCAPE),
            sa.not_(runs.c.task_name.ilike(pattern, escape=_ESCAPE)),
        )
    )
    return sa.select(by_name.scalar_subquery() + by_id.scalar_subquery())


TOTAL_LABEL = "total_matching"


def page_with_total_query(query: RunQuery) -> sa.Select[Any]:
    """The page, each row also carrying the total (one uncorrelated subquery, run once).

    An empty page carries no total: ask ``total_query`` then.
    """
    return page_query(query).add_columns(total_query(query).scalar_subquery().label(TOTAL_LABEL))
