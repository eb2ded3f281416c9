"""The run listing as SQL: filters, order and window of ``domain.listing.apply_query``.

Every value a request chooses is a named bound parameter (``task_name``, ``pattern``,
``limit``, ``offset``), so one compiled statement serves every query of the same shape:
see :func:`prepared`. ``adapters.postgres.run_listing`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from adapters.postgres.tables import C_TEXT, run_counts, runs
from domain.listing import ListedRun, RunQuery, SortField, StatusFilter

_SORT_COLUMNS: dict[SortField, sa.ColumnElement[Any]] = {
    SortField.TASK_NAME: runs.c.task_name,
    SortField.STATUS: runs.c.status,
    SortField.START_AT: runs.c.sort_start_at,
    SortField.EXIT_CODE: runs.c.exit_code,
    SortField.DURATION: runs.c.duration,
    SortField.CREATED_AT: runs.c.created_at,
}

_ESCAPE = "\\"

LISTED_COLUMNS = tuple(runs.c[name] for name in ListedRun._fields)
"""What a page selects, in the order ``rows.listed_from_row`` reads."""


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


def bound_values(query: RunQuery) -> dict[str, Any]:
    """The values of the statements' named parameters for ``query``."""
    # Python lower-cases the needle and ILIKE folds the (ASCII) ids and names: the same
    # answer as ``needle.lower() in id.lower()``, and the trigram indexes serve ILIKE.
    pattern = like_pattern(query.search.lower()) if query.search else None
    return {
        "task_name": query.task_name,
        "pattern": pattern,
        "limit": query.limit,
        "offset": query.offset,
    }


def _bind(query: RunQuery, name: str) -> sa.BindParameter[Any]:
    value = bound_values(query)[name]
    # Strings as the columns they meet (collation "C"), as SQLAlchemy types literals.
    type_ = sa.BigInteger() if name in ("limit", "offset") else C_TEXT
    return sa.bindparam(name, value, type_=type_)


def _filters(query: RunQuery) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if query.task_name is not None:
        conditions.append(runs.c.task_name == _bind(query, "task_name"))
    if query.status is not None:
        conditions.append(_status_condition(query.status, runs.c.status, runs.c.end_reason))
    if query.search:
        pattern = _bind(query, "pattern")
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
            sa.select(*LISTED_COLUMNS)
            .where(*_filters(query))
            .order_by(*order)
            .limit(_bind(query, "limit"))
            .offset(_bind(query, "offset"))
        )
    ids = (
        sa.select(runs.c.id)
        .where(*_filters(query))
        .order_by(*order)
        .limit(_bind(query, "limit"))
        .offset(_bind(query, "offset"))
        .subquery("page_ids")
    )
    return sa.select(*LISTED_COLUMNS).join_from(runs, ids, runs.c.id == ids.c.id).order_by(*order)


def _counted(query: RunQuery) -> list[sa.ColumnElement[bool]]:
    counted: list[sa.ColumnElement[bool]] = []
    if query.task_name is not None:
        counted.append(run_counts.c.task_name == _bind(query, "task_name"))
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
        counted = sa.func.coalesce(sa.func.sum(run_counts.c.n), 0)
        return sa.select(sa.cast(counted, sa.BigInteger)).where(*_counted(query))
    # A search matches every run of a task whose name matches, so those are counted from
    # the counters too; only runs matched by their id alone are counted row by row, and
    # the trigram index on id finds few of them. The two sets do not overlap.
    pattern = _bind(query, "pattern")
    by_name = sa.select(
        sa.cast(sa.func.coalesce(sa.func.sum(run_counts.c.n), 0), sa.BigInteger)
    ).where(*_counted(query), run_counts.c.task_name.ilike(pattern, escape=_ESCAPE))
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


_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A compiled listing statement: asyncpg's SQL and where each ``$n`` comes from."""

    sql: str
    names: tuple[str, ...]
    """The parameter behind each ``$n``, in order."""
    constants: dict[str, Any]
    """Values fixed by the shape itself (the status filter's lists)."""

    def args(self, values: dict[str, Any]) -> list[Any]:
        """The positional arguments for a query whose :func:`bound_values` are ``values``."""
        return [values[n] if n in values else self.constants[n] for n in self.names]


def _compile(select: sa.Select[Any]) -> Prepared:
    compiled = select.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    names = tuple(compiled.positiontup or ())
    params = compiled.params
    return Prepared(str(compiled), names, {n: params[n] for n in names if n not in _BOUND})


_BOUND = frozenset(bound_values(RunQuery()))
_MAX_SHAPES = 512
_prepared: dict[tuple[Any, ...], Prepared] = {}


def _shape(query: RunQuery) -> tuple[Any, ...]:
    """What the SQL depends on; the bound values are all that differ within a shape."""
    return (
        query.task_name is None,
        query.status,
        bool(query.search),
        query.effective_field,
        query.descending,
        query.offset < DEFERRED_JOIN_OFFSET,
    )


def prepared(query: RunQuery, *, total_only: bool = False) -> Prepared:
    """``page_with_total_query`` (or ``total_query``) of ``query``, compiled once per shape.

    Building and compiling the statement costs more CPU than PostgreSQL spends running it.
    """
    key = (total_only, *_shape(query))
    found = _prepared.get(key)
    if found is None:
        if len(_prepared) >= _MAX_SHAPES:  # status lists make many shapes possible
            _prepared.clear()
        select = total_query(query) if total_only else page_with_total_query(query)
        found = _prepared[key] = _compile(select)
    return found
