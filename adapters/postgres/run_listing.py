"""The run listing's reads: the statements of ``listing`` on the pool's asyncpg connections.

A listing request is mostly CPU in the daemon, not in PostgreSQL (the default page's
statement takes 0.4 ms), so this path skips SQLAlchemy's execute machinery: the pool's raw
checkout, the driver's prepared statements, rows to :class:`ListedRun` by position.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from adapters.postgres.database import is_unavailable
from adapters.postgres.listing import LISTED_COLUMNS, TOTAL_LABEL, bound_values, prepared
from adapters.postgres.rows import has_nul, listed_from_row
from domain.errors import StoreUnavailable
from domain.listing import ListedRun, RunPage, RunQuery

READERS = 8
"""Listing statements run at once per engine; the others wait for a turn.

More would not run faster on the database's cores, and beyond the pool's connections
each one would open (and then close) an overflow connection: a TLS attempt, a backend
start and an empty statement cache, per request, under load.
"""

MAX_DEAD = 32
"""Dead pooled connections a read skips before it gives up: more than the pool holds."""


_COLUMNS = ", ".join(f"r.{c.name}" for c in LISTED_COLUMNS)
_INNER = ", ".join(c.name for c in LISTED_COLUMNS)


def _newest_sql(ended_only: bool) -> str:
    # A lateral probe per name: a backward scan of ix_runs_task_created_at, stopping after
    # ``limit`` rows (ended ones only, when asked: skipping the few active ones on top).
    ended = "AND status = 'ended' " if ended_only else ""
    return (
        f"SELECT {_COLUMNS} FROM unnest($1::text[]) AS t(name) CROSS JOIN LATERAL ("
        f"SELECT {_INNER} FROM runs WHERE task_name = t.name {ended}"
        "ORDER BY created_at DESC, id DESC LIMIT $2) AS r"
    )


NEWEST_SQL = {flag: _newest_sql(flag) for flag in (False, True)}


class ConnectionLost(StoreUnavailable):
    """A pooled connection turned out dead while in use; it was dropped from the pool."""


def _driver_unavailable(error: BaseException) -> bool:
    """Whether an asyncpg error means the connection or the server is gone."""
    if isinstance(error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError | OSError):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(("28", "3D000", "53300", "57P0"))


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg connection, outside any transaction.

    Each statement on it commits by itself. Failing to connect raises ``StoreUnavailable``;
    a connection found dead in use is dropped from the pool and raises ``ConnectionLost``.
    """
    try:
        # The pool's own checkout, without SQLAlchemy's Connection around it: half the CPU.
        fairy = await engine.raw_connection()
    except Exception as error:
        if is_unavailable(error) or _driver_unavailable(error):
            raise StoreUnavailable(f"database unavailable: {error}") from error
        raise
    try:
        yield fairy.driver_connection
    except BaseException as error:
        gone = isinstance(error, Exception) and _driver_unavailable(error)
        if gone:
            await greenlet_spawn(fairy.invalidate, error)
        # Cancelled or not, the connection goes back to the pool (or is closed).
        await asyncio.shield(greenlet_spawn(fairy.close))
        if gone:
            raise ConnectionLost(f"database unavailable: {error}") from error
        raise
    await greenlet_spawn(fairy.close)


class RunListing:
    """The run listing on one engine."""

    def __init__(self, engine: AsyncEngine, readers: int = READERS) -> None:
        self._engine = engine
        self._readers = asyncio.Semaphore(readers)

    async def page(self, query: RunQuery) -> RunPage:
        """Filter, order and window as ``domain.listing.apply_query`` does.

        One statement, prepared once per connection and shape; only an empty page needs a
        second one for the total. A read is idempotent: one that meets a dead pooled
        connection (a restarted server leaves them all dead) is tried on the next one.
        """
        if has_nul(query.task_name) or has_nul(query.search):
            return RunPage(runs=[], total=0)
        for _ in range(MAX_DEAD):
            try:
                return await self._read(query)
            except ConnectionLost:
                continue
        return await self._read(query)

    async def newest(
        self, task_names: list[str], limit: int, ended_only: bool
    ) -> dict[str, list[ListedRun]]:
        """Each task's newest ``limit`` runs, newest first, in one statement."""
        found: dict[str, list[ListedRun]] = {name: [] for name in task_names}
        names = [name for name in task_names if not has_nul(name)]
        if not names or limit <= 0:
            return found
        for attempt in range(MAX_DEAD + 1):
            try:
                async with self._readers, driver_connection(self._engine) as conn:
                    records = await conn.fetch(NEWEST_SQL[ended_only], names, limit)
                break
            except ConnectionLost:
                if attempt == MAX_DEAD:
                    raise
        for record in records:
            run = listed_from_row(record)
            found[run.task_name].append(run)
        return found

    async def _read(self, query: RunQuery) -> RunPage:
        values = bound_values(query)
        page = prepared(query)
        async with self._readers, driver_connection(self._engine) as conn:
            records = await conn.fetch(page.sql, *page.args(values))
            if records:
                count = records[0][TOTAL_LABEL]
            else:
                total = prepared(query, total_only=True)
                count = await conn.fetchval(total.sql, *total.args(values))
        return RunPage(runs=[listed_from_row(r) for r in records], total=int(count or 0))
