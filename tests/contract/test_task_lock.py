"""PostgreSQL only: which per-task locks the server-side admit and claim wait for.

Admits wait for the task lock, as prune takes it; claims wait for the slot lock and not for
the task lock. The functions (migration 0006) spell the keys out in SQL; if they drifted
from ``locks.lock_task``/``locks.lock_slots`` they would no longer serialize with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.locks import lock_slots, lock_task
from adapters.postgres.runs import PostgresRunRepository
from domain.run import Run, TriggeredBy
from domain.tasks import TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 6, 1, tzinfo=UTC)

_ADVISORY_WAITERS = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()"
)


async def _waits_for(lock: Any, engine: AsyncEngine, call: Awaitable[Any]) -> Any:
    """Run ``call`` while another transaction holds ``lock``; see it wait; then let it go."""
    async with engine.connect() as holder, holder.begin():
        await lock(holder, "job")
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
    admitted = await _waits_for(lock_task, engine, repo.admit(run, TaskSpec("job", "true")))
    assert admitted.run == run


async def test_an_admit_that_takes_a_slot_waits_for_the_slot_lock(engine: AsyncEngine) -> None:
    repo = PostgresRunRepository(engine)
    run = Run(new_id(T0), "job", T0, TriggeredBy.CRON)
    admitted = await _waits_for(
        lock_slots, engine, repo.admit(run, TaskSpec("job", "true"), start_at=T0)
    )
    assert admitted.run == run.started(T0)


async def test_claim_waits_for_the_slot_lock(engine: AsyncEngine) -> None:
    repo = PostgresRunRepository(engine)
    run = Run(new_id(T0), "job", T0, TriggeredBy.API)
    await repo.add(run)
    started = await _waits_for(lock_slots, engine, repo.claim(run, T0, 1))
    assert started == run.started(T0)


async def test_claim_does_not_wait_for_an_admit_in_progress(engine: AsyncEngine) -> None:
    repo = PostgresRunRepository(engine)
    run = Run(new_id(T0), "job", T0, TriggeredBy.API)
    await repo.add(run)
    async with engine.connect() as holder, holder.begin():
        await lock_task(holder, "job")
        started = await asyncio.wait_for(repo.claim(run, T0, 1), 5)
    assert started == run.started(T0)
