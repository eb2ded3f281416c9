"""The run repository on PostgreSQL: SQLAlchemy Core over the ``runs`` table."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.postgres.database import transaction
from adapters.postgres.listing import page_query, total_query
from adapters.postgres.locks import CounterKey, lock_counters, lock_task
from adapters.postgres.rows import from_row, has_nul, to_row
from adapters.postgres.tables import RUN_COLUMNS, run_counts, runs, task_ticks
from domain import policies
from domain.listing import RunPage, RunQuery
from domain.policies import Admission, TaskLoad
from domain.ports import Admitted, RunCount, RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec

_ENDED = RunStatus.ENDED.value
_IS_CRON_TICK = sa.and_(runs.c.triggered_by == TriggeredBy.CRON.value, runs.c.retry_attempt == 0)


def _counter_key(run: Run) -> CounterKey:
    reason = run.end_reason.value if run.end_reason is not None else ""
    return (run.task_name, run.status.value, reason)


async def _first_run(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> Run | None:
    row = (await conn.execute(sa.select(*RUN_COLUMNS).where(*where))).mappings().first()
    return from_row(row) if row is not None else None


async def _already_admitted(conn: AsyncConnection, run: Run) -> Admitted | None:
    """The stored run a repeated trigger stands for: same cloud execution, or same tick."""
    if run.external_execution_id is not None:
        found = await _first_run(conn, runs.c.external_execution_id == run.external_execution_id)
        if found is not None:
            return Admitted(found, Admission.ACCEPT)
    if run.triggered_by is TriggeredBy.CRON and run.retry_attempt == 0:
        found = await _first_run(
            conn,
            runs.c.task_name == run.task_name,
            runs.c.created_at == run.created_at,
            _IS_CRON_TICK,
        )
        if found is not None:
            return Admitted(found, Admission.SKIP)
    return None


async def _load(conn: AsyncConnection, task_name: str) -> TaskLoad:
    stmt = (
        sa.select(runs.c.status, sa.func.count())
        .where(runs.c.task_name == task_name, runs.c.status != _ENDED)
        .group_by(runs.c.status)
    )
    counts = {status: int(n) for status, n in (await conn.execute(stmt)).all()}
    return TaskLoad(
        running=counts.get(RunStatus.RUNNING.value, 0),
        pending=counts.get(RunStatus.PENDING.value, 0),
    )


async def _running(conn: AsyncConnection, task_name: str) -> builtins.list[Run]:
    stmt = sa.select(*RUN_COLUMNS).where(
        runs.c.task_name == task_name, runs.c.status == RunStatus.RUNNING.value
    )
    return [from_row(row) for row in (await conn.execute(stmt)).mappings().all()]


async def _prunable(
    conn: AsyncConnection,
    task_name: str,
    keep_runs: int | None,
    ended_before: datetime | None,
    batch: int,
) -> builtins.list[sa.Select[Any]]:
    """Queries for up to ``batch`` ids each: runs beyond the newest kept, runs too old."""
    ended = (runs.c.task_name == task_name, runs.c.status == _ENDED)
    found: list[sa.Select[Any]] = []
    if keep_runs is not None:
        beyond: list[sa.ColumnElement[bool]] = []
        if keep_runs > 0:
            newest = (
                sa.select(runs.c.created_at, runs.c.id)
                .where(*ended)
                .order_by(runs.c.created_at.desc(), runs.c.id.desc())
                .offset(keep_runs - 1)
                .limit(1)
            )
            last_kept = (await conn.execute(newest)).first()
            if last_kept is not None:
                beyond.append(sa.tuple_(runs.c.created_at, runs.c.id) < sa.tuple_(*last_kept))
        if keep_runs <= 0 or beyond:
            found.append(
                sa.select(runs.c.id)
                .where(*ended, *beyond)
                .order_by(runs.c.created_at, runs.c.id)
                .limit(batch)
            )
    if ended_before is not None:
        found.append(
            sa.select(runs.c.id)
            .where(*ended, runs.c.end_at < ended_before)
            .order_by(runs.c.end_at)
            .limit(batch)
        )
    return found


class PostgresRunRepository(RunRepository):
    """Runs in PostgreSQL. Every method is one transaction.

    ``admit``, ``claim`` and ``prune`` hold the task's advisory lock (``locks.lock_task``)
    for their transaction, so their decisions about one task happen one at a time.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, run: Run) -> None:
        """Insert a new run; a duplicate id, external execution id or cron tick raises
        ValueError."""
        try:
            async with transaction(self._engine) as conn:
                await conn.execute(runs.insert().values(to_row(run)))
        except sa_exc.IntegrityError as error:
            raise ValueError(f"run {run.id} conflicts with a stored run: {error.orig}") from error

    async def add_cron_run(self, run: Run) -> bool:
        """Insert a cron run unless its tick is already recorded; say whether it was."""
        stmt = (
            pg_insert(runs)
            .values(to_row(run))
            .on_conflict_do_nothing(
                index_elements=[runs.c.task_name, runs.c.created_at],
                index_where=_IS_CRON_TICK,
            )
        )
        async with transaction(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def replace(self, new: Run, expected: RunStatus, follow_up: Run | None = None) -> bool:
        """Store ``new`` if the stored run still has status ``expected``; then ``follow_up``.

        A ``follow_up`` that conflicts with a stored run raises ValueError and undoes both.
        """
        values = to_row(new)
        del values["id"]
        stmt = runs.update().where(runs.c.id == new.id, runs.c.status == expected.value)
        try:
            async with transaction(self._engine) as conn:
                if follow_up is not None:
                    before = (new.task_name, expected.value, "")
                    await lock_counters(conn, [before, _counter_key(new), _counter_key(follow_up)])
                if (await conn.execute(stmt.values(values))).rowcount != 1:
                    return False
                if follow_up is not None:
                    await conn.execute(runs.insert().values(to_row(follow_up)))
        except sa_exc.IntegrityError as error:
            raise ValueError(
                f"run {follow_up.id if follow_up else new.id} conflicts with a stored run: "
                f"{error.orig}"
            ) from error
        return True

    async def admit(self, run: Run, task: TaskSpec) -> Admitted:
        """Record a trigger under ``task``'s overlap policy, deciding under the task's lock.

        A repeat of a stored cloud execution returns that run (ACCEPT), a repeat of a stored
        cron tick returns that run (SKIP); neither inserts anything.
        """
        if run.task_name != task.name:
            raise ValueError(f"run {run.id} is of task {run.task_name!r}, not {task.name!r}")
        async with transaction(self._engine) as conn:
            await lock_task(conn, task.name)
            repeated = await _already_admitted(conn, run)
            if repeated is not None:
                return repeated
            load = await _load(conn, task.name)
            decision = policies.admit(task, load)
            to_stop: Sequence[Run] = ()
            if decision is Admission.TERMINATE:
                running = await _running(conn, task.name)
                to_stop = tuple(policies.runs_to_terminate(task, running, load.pending))
            stored = (
                run.ended(EndReason.SKIPPED, run.created_at) if decision is Admission.SKIP else run
            )
            # Without a conflict target: a tick or an external id recorded meanwhile by a
            # writer that does not take the lock (``add``, ``add_cron_run``) is no error.
            insert = pg_insert(runs).values(to_row(stored)).on_conflict_do_nothing()
            if (await conn.execute(insert)).rowcount == 1:
                return Admitted(stored, decision, to_stop)
            repeated = await _already_admitted(conn, run)
        if repeated is None:
            raise ValueError(f"run {run.id} conflicts with a stored run: same id")
        return repeated

    async def claim(self, run: Run, at: datetime, max_concurrent: int) -> Run | None:
        """Move the pending run to running at ``at`` if a slot is free; None otherwise."""
        async with transaction(self._engine) as conn:
            await lock_task(conn, run.task_name)
            stored = await _first_run(conn, runs.c.id == run.id)
            if stored is None or stored.status is not RunStatus.PENDING:
                return None
            if (await _load(conn, stored.task_name)).running >= max_concurrent:
                return None
            started = stored.started(at)
            values = to_row(started)
            del values["id"]
            # Enders do not take the lock: the run may have been stopped since it was read.
            still_pending = runs.update().where(
                runs.c.id == run.id, runs.c.status == RunStatus.PENDING.value
            )
            if (await conn.execute(still_pending.values(values))).rowcount != 1:
                return None
        return started

    async def prune(
        self, task_name: str, keep_runs: int | None, ended_before: datetime | None, batch: int
    ) -> int:
        """Delete up to ``batch`` ended runs (and their logs) that retention lets go."""
        if batch <= 0 or has_nul(task_name):
            return 0
        async with transaction(self._engine) as conn:
            # Serialized per task: two prunes deleting rows of several end reasons would
            # take the counter rows in different orders.
            await lock_task(conn, task_name)
            found = await _prunable(conn, task_name, keep_runs, ended_before, batch)
            if not found:
                return 0
            victims = sa.union(*found).subquery() if len(found) > 1 else found[0].subquery()
            doomed = sa.select(victims.c.id).limit(batch)
            result = await conn.execute(runs.delete().where(runs.c.id.in_(doomed)))
        return int(result.rowcount)

    async def last_ticks(self) -> dict[str, datetime]:
        """The latest cron tick handled, per task."""
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(sa.select(task_ticks))).all()
        return {name: tick for name, tick in rows}

    async def save_last_tick(self, task_name: str, tick: datetime) -> None:
        """Remember ``tick`` as handled, unless a later one already is."""
        stmt = pg_insert(task_ticks).values(task_name=task_name, last_tick=tick)
        stmt = stmt.on_conflict_do_update(
            index_elements=[task_ticks.c.task_name],
            set_={"last_tick": sa.func.greatest(task_ticks.c.last_tick, stmt.excluded.last_tick)},
        )
        async with transaction(self._engine) as conn:
            await conn.execute(stmt)

    async def get(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        if has_nul(run_id):
            return None
        async with transaction(self._engine) as conn:
            return await _first_run(conn, runs.c.id == run_id)

    async def active(self, task_name: str | None = None) -> builtins.list[Run]:
        """Pending and running runs, oldest first."""
        stmt = sa.select(*RUN_COLUMNS).where(runs.c.status != _ENDED)
        if task_name is not None:
            if has_nul(task_name):
                return []
            stmt = stmt.where(runs.c.task_name == task_name)
        stmt = stmt.order_by(runs.c.created_at, runs.c.id)
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [from_row(r) for r in rows]

    async def delete(self, run_id: str) -> bool:
        """Remove an ended run (and, by cascade, its log); say whether one was removed."""
        if has_nul(run_id):
            return False
        stmt = runs.delete().where(runs.c.id == run_id, runs.c.status == _ENDED)
        async with transaction(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def counts(self) -> builtins.list[RunCount]:
        """Stored runs per (task, status, end reason), from the trigger-kept counters."""
        stmt = sa.select(run_counts).where(run_counts.c.n != 0)
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            RunCount(task, RunStatus(status), EndReason(reason) if reason else None, int(n))
            for task, status, reason, n in rows
        ]

    async def last_ended(self, reasons: Collection[EndReason]) -> Run | None:
        """The ended run with one of ``reasons`` that ended last (ties: greatest id).

        One index probe per reason (``ix_runs_end_reason_end_at``), then the latest of those.
        """
        if not reasons:
            return None
        latest = [
            sa.select(*RUN_COLUMNS)
            .where(runs.c.end_reason == reason.value, runs.c.end_at.is_not(None))
            .order_by(runs.c.end_at.desc(), runs.c.id.desc())
            .limit(1)
            for reason in sorted(set(reasons))
        ]
        found = sa.union_all(*latest).subquery()
        stmt = sa.select(found).order_by(found.c.end_at.desc(), found.c.id.desc()).limit(1)
        async with transaction(self._engine) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return from_row(row) if row is not None else None

    async def list(self, query: RunQuery) -> RunPage:
        """Filter, order and window as ``domain.listing.apply_query`` does."""
        if has_nul(query.task_name) or has_nul(query.search):
            return RunPage(runs=[], total=0)
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(page_query(query))).mappings().all()
            total = await conn.scalar(total_query(query))
        return RunPage(runs=[from_row(r) for r in rows], total=int(total or 0))
