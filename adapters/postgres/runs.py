"""The run repository on PostgreSQL: SQLAlchemy Core over the ``runs`` table."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.postgres.batching import Batcher, BatchStats, Lanes
from adapters.postgres.database import ASYNC_COMMIT, autocommit, transaction, wait_for_flush
from adapters.postgres.locks import CounterKey, counter_lock_order, lock_task
from adapters.postgres.rows import from_row, has_nul, to_row
from adapters.postgres.run_listing import RunListing
from adapters.postgres.tables import C_TEXT, RUN_COLUMNS, run_counts, runs, task_ticks
from domain import policies
from domain.listing import ListedRun, RunPage, RunQuery
from domain.policies import Admission
from domain.ports import Admitted, RunCount, RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec

_ENDED = RunStatus.ENDED.value
_IS_CRON_TICK = sa.and_(runs.c.triggered_by == TriggeredBy.CRON.value, runs.c.retry_attempt == 0)


# The server-side functions of migrations 0005 and 0006 (see their docstrings for what each
# returns), committed asynchronously and then flushed (``database.wait_for_flush``).
_ADMIT_MANY = sa.text(
    "SELECT f.item, f.kind, f.decision, f.pending, (f.run).* "
    f"FROM {ASYNC_COMMIT}, runwarden_admit_many(:items) AS f"
)
_CLAIM_MANY = sa.text(
    f"SELECT f.item, (f.run).* FROM {ASYNC_COMMIT}, runwarden_claim_many(:items) AS f"
)
_REPLACE_MANY = sa.text(
    f"SELECT f.item, f.replaced FROM {ASYNC_COMMIT}, "
    "runwarden_replace_many(:items, :tasks, :statuses, :reasons) AS f"
)
_REPLACE = sa.text(
    f"SELECT {ASYNC_COMMIT}, "
    "runwarden_replace(:new, :expected, :follow_up, :tasks, :statuses, :reasons) AS replaced"
)
_encoder = msgspec.json.Encoder()


def _json(run: Run) -> str:
    """``run`` as the ``jsonb`` the functions read with ``jsonb_populate_record``."""
    return _encoder.encode(to_row(run)).decode()


def _items(items: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The ``jsonb`` array the ``*_many`` functions of migration 0006 take."""
    return {"items": _encoder.encode(items).decode()}


def _by_item(rows: Sequence[RowMapping], count: int) -> builtins.list[builtins.list[RowMapping]]:
    """The rows of a ``*_many`` function grouped by their ``item``, in item order."""
    grouped: builtins.list[builtins.list[RowMapping]] = [[] for _ in range(count)]
    for row in rows:
        grouped[row["item"]].append(row)
    return grouped


_Replacement = tuple[Run, RunStatus, "Run | None"]
"""The arguments of one ``replace``: new run, expected status, follow-up."""


def _admit_task(item: dict[str, Any]) -> str:
    return str(item["run"]["task_name"])


def _claim_task(item: dict[str, Any]) -> str:
    return str(item["task"])


def _replace_task(item: _Replacement) -> str:
    return item[0].task_name


def _counter_keys(item: _Replacement) -> builtins.list[CounterKey]:
    """The ``run_counts`` rows one replace moves."""
    new, expected, follow_up = item
    keys = [(new.task_name, expected.value, ""), _counter_key(new)]
    if follow_up is not None:
        keys.append(_counter_key(follow_up))
    return keys


def _lock_params(keys: Sequence[CounterKey]) -> dict[str, builtins.list[str]]:
    return {
        "tasks": [k[0] for k in keys],
        "statuses": [k[1] for k in keys],
        "reasons": [k[2] for k in keys],
    }


def _counter_key(run: Run) -> CounterKey:
    reason = run.end_reason.value if run.end_reason is not None else ""
    return (run.task_name, run.status.value, reason)


def replace_many_params(items: Sequence[_Replacement]) -> dict[str, Any]:
    """The parameters of ``runwarden_replace_many`` for these replaces (each a new run, the
    status it must still have, a follow-up or None), every counter row of the batch listed
    to be locked up front in one order (see migration 0006)."""
    keys = counter_lock_order([key for item in items for key in _counter_keys(item)])
    rows = [
        {
            "new": to_row(new),
            "expected": expected.value,
            "follow_up": to_row(follow_up) if follow_up is not None else None,
        }
        for new, expected, follow_up in items
    ]
    return {**_items(rows), **_lock_params(keys)}


async def _first_run(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> Run | None:
    row = (await conn.execute(sa.select(*RUN_COLUMNS).where(*where))).mappings().first()
    return from_row(row) if row is not None else None


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


TICKS_BATCH = 1024
"""The most ``save_last_tick`` calls one statement carries."""


class PostgresRunRepository(RunRepository):
    """Runs in PostgreSQL. Every method is one transaction, most of them one statement.

    ``admit``, ``claim`` and ``prune`` hold the task's advisory lock (``locks.lock_task``)
    for their transaction, so their decisions about one task happen one at a time.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._listing = RunListing(engine)
        self._admits = Lanes(
            functools.partial(self._per_item, _ADMIT_MANY),
            functools.partial(self._one_item, _ADMIT_MANY),
            key=_admit_task,
        )
        self._claims = Lanes(
            functools.partial(self._per_item, _CLAIM_MANY),
            functools.partial(self._one_item, _CLAIM_MANY),
            key=_claim_task,
        )
        self._replaces = Lanes(self._replace_many, self._replace_one, key=_replace_task)
        # One small upsert of two arrays per batch: a burst of ticks goes in one or two.
        self._ticks = Batcher(self._save_ticks, self._save_tick, max_batch=TICKS_BATCH)

    @property
    def batch_stats(self) -> dict[str, BatchStats]:
        """How the concurrent writes were sent, per kind (see ``batching.py``)."""
        return {
            "admit": self._admits.stats,
            "claim": self._claims.stats,
            "replace": self._replaces.stats,
            "save_last_tick": self._ticks.stats,
        }

    async def add(self, run: Run) -> None:
        """Insert a new run; a duplicate id, external execution id or cron tick raises
        ValueError."""
        try:
            async with autocommit(self._engine) as conn:
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
        async with autocommit(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def replace(self, new: Run, expected: RunStatus, follow_up: Run | None = None) -> bool:
        """Store ``new`` if the stored run still has status ``expected``; then ``follow_up``.

        A ``follow_up`` that conflicts with a stored run raises ValueError and undoes both:
        ``runwarden_replace`` is one statement, so one transaction. Concurrent replaces go
        together through ``runwarden_replace_many``.
        """
        return await self._replaces.submit((new, expected, follow_up))

    async def _replace_one(self, item: _Replacement) -> bool:
        new, expected, follow_up = item
        keys: builtins.list[CounterKey] = []
        if follow_up is not None:
            keys = counter_lock_order(_counter_keys(item))
        params = {
            "new": _json(new),
            "expected": expected.value,
            "follow_up": _json(follow_up) if follow_up is not None else None,
            **_lock_params(keys),
        }
        try:
            async with autocommit(self._engine) as conn:
                replaced = (await conn.execute(_REPLACE, params)).mappings().one()["replaced"]
                await wait_for_flush(conn)
        except sa_exc.IntegrityError as error:
            raise ValueError(
                f"run {follow_up.id if follow_up else new.id} conflicts with a stored run: "
                f"{error.orig}"
            ) from error
        return bool(replaced)

    async def _replace_many(self, items: Sequence[_Replacement]) -> builtins.list[bool]:
        params = replace_many_params(items)
        async with autocommit(self._engine) as conn:
            found = (await conn.execute(_REPLACE_MANY, params)).mappings().all()
            await wait_for_flush(conn)
        replaced = [False] * len(items)
        for row in found:
            replaced[row["item"]] = bool(row["replaced"])
        return replaced

    async def admit(self, run: Run, task: TaskSpec, start_at: datetime | None = None) -> Admitted:
        """Record a trigger under ``task``'s overlap policy, deciding under the task's lock.

        A repeat of a stored cloud execution returns that run (ACCEPT), a repeat of a stored
        cron tick returns that run (SKIP); neither inserts anything. With ``start_at`` an
        accepted run that finds a free slot (and nothing queued) is stored running.
        ``runwarden_admit_many`` decides as ``policies.admit`` does; concurrent admits go
        together in one call of it.
        """
        if run.task_name != task.name:
            raise ValueError(f"run {run.id} is of task {run.task_name!r}, not {task.name!r}")
        rows = await self._admits.submit(
            {
                "run": to_row(run),
                "max_concurrent": task.max_concurrent,
                "on_overlap": task.on_overlap.value,
                "queue_max": task.queue_max,
                "start_at": start_at,
            }
        )
        if not rows:
            raise ValueError(f"run {run.id} conflicts with a stored run: same id")
        first = rows[0]
        decision = Admission(first["decision"])
        if first["kind"] == "repeat":
            return Admitted(from_row(first), decision)
        stored = run.ended(EndReason.SKIPPED, run.created_at) if decision is Admission.SKIP else run
        if first["status"] == RunStatus.RUNNING.value and start_at is not None:
            stored = run.started(start_at)
        to_stop: Sequence[Run] = ()
        if decision is Admission.TERMINATE:
            running = [from_row(row) for row in rows[1:]]
            to_stop = tuple(policies.runs_to_terminate(task, running, int(first["pending"])))
        return Admitted(stored, decision, to_stop)

    async def claim(self, run: Run, at: datetime, max_concurrent: int) -> Run | None:
        """Move the pending run to running at ``at`` if a slot is free; None otherwise.

        ``run.node_id`` is the claimer: it must be up, and it holds the run from now on.

        Concurrent claims go together through ``runwarden_claim_many``.
        """
        rows = await self._claims.submit(
            {
                "id": run.id,
                "task": run.task_name,
                "at": at,
                "max": max_concurrent,
                "node": run.node_id,
            }
        )
        return from_row(rows[0]) if rows else None

    async def _one_item(
        self, statement: sa.TextClause, item: dict[str, Any]
    ) -> builtins.list[RowMapping]:
        return (await self._per_item(statement, [item]))[0]

    async def _per_item(
        self, statement: sa.TextClause, items: Sequence[dict[str, Any]]
    ) -> builtins.list[builtins.list[RowMapping]]:
        """One of the ``*_many`` functions over ``items``, its rows grouped per item."""
        async with autocommit(self._engine) as conn:
            found = (await conn.execute(statement, _items(items))).mappings().all()
            await wait_for_flush(conn)
        return _by_item(found, len(items))

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
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(sa.select(task_ticks))).all()
        return {name: tick for name, tick in rows}

    async def save_last_tick(self, task_name: str, tick: datetime) -> None:
        """Remember ``tick`` as handled, unless a later one already is.

        Concurrent calls (many cron tasks due at once) go as one statement.
        """
        await self._ticks.submit((task_name, tick))

    async def _save_ticks(self, items: Sequence[tuple[str, datetime]]) -> builtins.list[None]:
        latest: dict[str, datetime] = {}
        for name, tick in items:
            latest[name] = max(tick, latest.get(name, tick))
        # In name order, as every writer of several task_ticks rows takes them.
        names = sorted(latest)
        stmt = pg_insert(task_ticks).from_select(
            ["task_name", "last_tick"],
            sa.select(
                sa.func.unnest(sa.cast(names, ARRAY(C_TEXT))),
                sa.func.unnest(sa.cast([latest[n] for n in names], ARRAY(sa.DateTime(True)))),
            ),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[task_ticks.c.task_name],
            set_={"last_tick": sa.func.greatest(task_ticks.c.last_tick, stmt.excluded.last_tick)},
        )
        async with autocommit(self._engine) as conn:
            await conn.execute(stmt)
        return [None] * len(items)

    async def _save_tick(self, item: tuple[str, datetime]) -> None:
        await self._save_ticks([item])

    async def get(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        if has_nul(run_id):
            return None
        async with autocommit(self._engine) as conn:
            return await _first_run(conn, runs.c.id == run_id)

    async def active(self, task_name: str | None = None) -> builtins.list[Run]:
        """Pending and running runs, oldest first."""
        stmt = sa.select(*RUN_COLUMNS).where(runs.c.status != _ENDED)
        if task_name is not None:
            if has_nul(task_name):
                return []
            stmt = stmt.where(runs.c.task_name == task_name)
        stmt = stmt.order_by(runs.c.created_at, runs.c.id)
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [from_row(r) for r in rows]

    async def delete(self, run_id: str) -> bool:
        """Remove an ended run (and, by cascade, its log); say whether one was removed."""
        if has_nul(run_id):
            return False
        stmt = runs.delete().where(runs.c.id == run_id, runs.c.status == _ENDED)
        async with autocommit(self._engine) as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def counts(self) -> builtins.list[RunCount]:
        """Stored runs per (task, status, end reason), from the trigger-kept counters."""
        stmt = sa.select(run_counts).where(run_counts.c.n != 0)
        async with autocommit(self._engine) as conn:
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
        async with autocommit(self._engine) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return from_row(row) if row is not None else None

    async def newest(
        self, task_names: Sequence[str], limit: int, ended_only: bool = False
    ) -> dict[str, Sequence[ListedRun]]:
        """Each task's newest runs: one statement of a lateral index probe per name."""
        found = await self._listing.newest(builtins.list(task_names), limit, ended_only)
        return dict(found)

    async def list(self, query: RunQuery) -> RunPage:
        """Filter, order and window as ``domain.listing.apply_query`` does."""
        return await self._listing.page(query)
