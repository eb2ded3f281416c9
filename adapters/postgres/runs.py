"""The run repository on PostgreSQL: SQLAlchemy Core over the ``runs`` table."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import transaction
from adapters.postgres.tables import RUN_COLUMNS, run_counts, runs
from domain.listing import RunPage, RunQuery, SortField, StatusFilter
from domain.ports import RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy

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


def _to_row(run: Run) -> dict[str, Any]:
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
    }


def _from_row(row: RowMapping) -> Run:
    reason = row["end_reason"]
    return Run(
        id=row["id"],
        task_name=row["task_name"],
        created_at=row["created_at"],
        triggered_by=TriggeredBy(row["triggered_by"]),
        status=RunStatus(row["status"]),
        end_reason=EndReason(reason) if reason is not None else None,
        exit_code=row["exit_code"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        replica_index=row["replica_index"],
        retry_attempt=row["retry_attempt"],
        retry_of_run_id=row["retry_of_run_id"],
        external_execution_id=row["external_execution_id"],
        pid=row["pid"],
    )


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


def _total_query(query: RunQuery, conditions: list[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    if query.search:
        return sa.select(sa.func.count()).select_from(runs).where(*conditions)
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


def _has_nul(value: str | None) -> bool:
    # PostgreSQL text cannot hold NUL, and no stored id or name contains one.
    return value is not None and "\x00" in value


class PostgresRunRepository(RunRepository):
    """Runs in PostgreSQL. Every method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, run: Run) -> None:
        """Insert a new run; a duplicate id or external execution id raises ValueError."""
        try:
            async with transaction(self._engine) as conn:
                await conn.execute(runs.insert().values(_to_row(run)))
        except sa_exc.IntegrityError as error:
            raise ValueError(f"run {run.id} conflicts with a stored run: {error.orig}") from error

    async def add_cron_run(self, run: Run) -> bool:
        """Insert a cron run unless its tick is already recorded; say whether it was."""
        stmt = (
            pg_insert(runs)
            .values(_to_row(run))
            .on_conflict_do_nothing(
                index_elements=[runs.c.task_name, runs.c.created_at],
                index_where=sa.and_(runs.c.triggered_by == "cron", runs.c.retry_attempt == 0),
            )
        )
        async with transaction(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def replace(self, new: Run, expected: RunStatus) -> bool:
        """Store ``new`` if the stored run still has status ``expected``."""
        values = _to_row(new)
        del values["id"]
        stmt = (
            runs.update().where(runs.c.id == new.id, runs.c.status == expected.value).values(values)
        )
        async with transaction(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def get(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        if _has_nul(run_id):
            return None
        async with transaction(self._engine) as conn:
            row = (
                (await conn.execute(sa.select(*RUN_COLUMNS).where(runs.c.id == run_id)))
                .mappings()
                .first()
            )
        return _from_row(row) if row is not None else None

    async def list(self, query: RunQuery) -> RunPage:
        """Filter, order and window as ``domain.listing.apply_query`` does."""
        if _has_nul(query.task_name) or _has_nul(query.search):
            return RunPage(runs=[], total=0)
        conditions = _filters(query)
        key = _SORT_COLUMNS[query.effective_field]
        order = (key.desc(), runs.c.id.desc()) if query.descending else (key.asc(), runs.c.id)
        page = (
            sa.select(*RUN_COLUMNS)
            .where(*conditions)
            .order_by(*order)
            .limit(query.limit)
            .offset(query.offset)
        )
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(page)).mappings().all()
            total = await conn.scalar(_total_query(query, conditions))
        return RunPage(runs=[_from_row(r) for r in rows], total=int(total or 0))

    async def active(self, task_name: str | None = None) -> builtins.list[Run]:
        """Pending and running runs, oldest first."""
        stmt = sa.select(*RUN_COLUMNS).where(runs.c.status != RunStatus.ENDED.value)
        if task_name is not None:
            if _has_nul(task_name):
                return []
            stmt = stmt.where(runs.c.task_name == task_name)
        stmt = stmt.order_by(runs.c.created_at, runs.c.id)
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_from_row(r) for r in rows]

    async def delete(self, run_id: str) -> bool:
        """Remove an ended run (and, by cascade, its log); say whether one was removed."""
        if _has_nul(run_id):
            return False
        stmt = runs.delete().where(runs.c.id == run_id, runs.c.status == RunStatus.ENDED.value)
        async with transaction(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1
