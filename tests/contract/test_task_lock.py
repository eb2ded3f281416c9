"""PostgreSQL only: the server-side admit and claim wait for the same per-task lock as prune.

``runwarden_admit`` and ``runwarden_claim`` (migration 0005) spell the advisory lock key
out in SQL; if it drifted from ``locks.lock_task`` they would no longer serialize with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.locks import lock_task
from adapters.postgres.runs import PostgresRunRepository
from domain.run import Run, TriggeredBy
from domain.tasks import TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 6, 1, tzinfo=UTC)

_ADVISORY_WAITERS = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()"
)


async def _waits_for_the_task_lock(engine: AsyncEngine, call: Awaitable[Any]) -> Any:
    """Run ``call`` while another transaction holds the lock; see it wait; then let it go."""
    async with engine.connect() as holder, holder.begin():
        await lock_task(holder, "job")
        pending = asyncio.ensure_future(call)
        while True:
            async with engine.connect() as probe:
                if await probe.scalar(_ADVISORY_WAITERS):
                    break
            assert not pending.done()
            await asyncio.sleep(0.01)
        assert not pending.done()
    return await pending


async def test_admit_waits_for_the_task_lock(engine: AsyncEngine) -> None:
    repo = PostgresRunRepository(engine)
    run = Run(new_id(T0), "job", T0, TriggeredBy.API)
    admitted = await _waits_for_the_task_lock(engine, repo.admit(run, TaskSpec("job", "true")))
    assert admitted.run == run


async def test_claim_waits_for_the_task_lock(engine: AsyncEngine) -> None:
    repo = PostgresRunRepository(engine)
    run = Run(new_id(T0), "job", T0, TriggeredBy.API)
    await repo.add(run)
    started = await _waits_for_the_task_lock(engine, repo.claim(run, T0, 1))
    assert started == run.started(T0)
