"""Admits and claims sent together by the Postgres adapter, and raced between daemons.

Calls made on one repository while a statement is in flight go as one ``*_many``
statement (``adapters/postgres/batching.py``); several repositories on one database stand
for several daemons, whose batches race each other under the task locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.postgres.database import async_url
from adapters.postgres.runs import PostgresRunRepository
from domain.listing import RunQuery, parse_status_filter
from domain.policies import Admission
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import OverlapPolicy, TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
DAEMONS = 3


@pytest.fixture
async def daemons(database_url: str) -> AsyncIterator[list[PostgresRunRepository]]:
    """Repositories of as many daemons, each with a pool of its own."""
    engines = [
        create_async_engine(async_url(database_url), pool_size=8, max_overflow=0)
        for _ in range(DAEMONS)
    ]
    try:
        yield [PostgresRunRepository(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


def skip_task(name: str, max_concurrent: int = 1) -> TaskSpec:
    return TaskSpec(
        name=name, run="true", on_overlap=OverlapPolicy.SKIP, max_concurrent=max_concurrent
    )


def trigger(task: str, ms: int) -> Run:
    at = T0 + timedelta(milliseconds=ms)
    return Run(new_id(at), task, at, TriggeredBy.API)


def assert_batched(repos: list[PostgresRunRepository], kind: str) -> None:
    """Calls of ``kind`` went in fewer statements than calls, and no batch fell back."""
    stats = [repo.batch_stats[kind] for repo in repos]
    assert sum(s.failed_batches for s in stats) == 0
    assert sum(s.statements for s in stats) < sum(s.calls for s in stats)


async def count(repo: PostgresRunRepository, task: str, status: str) -> int:
    return (await repo.list(RunQuery(task_name=task, status=parse_status_filter(status)))).total


async def test_a_batch_over_many_tasks_decides_each_task_first_come_first_served(
    daemons: list[PostgresRunRepository],
) -> None:
    repo = daemons[0]
    tasks = [skip_task(f"t{i:02d}") for i in range(30)]
    made = [
        (task, trigger(task.name, 10 * i + k)) for k in range(3) for i, task in enumerate(tasks)
    ]
    results = await asyncio.gather(*(repo.admit(run, task) for task, run in made))
    assert_batched([repo], "admit")
    for task in tasks:
        decisions = [r.decision for (t, _), r in zip(made, results, strict=True) if t is task]
        assert decisions == [Admission.ACCEPT, Admission.SKIP, Admission.SKIP], task.name
        assert await count(repo, task.name, "pending") == 1
        assert await count(repo, task.name, "skipped") == 2
    for (_, run), result in zip(made, results, strict=True):
        assert result.run.id == run.id
        assert await repo.get(run.id) == result.run


async def test_batches_of_several_daemons_never_exceed_the_skip_policy(
    daemons: list[PostgresRunRepository],
) -> None:
    tasks = [skip_task(f"s{i}", max_concurrent=2) for i in range(5)]
    calls = [
        daemons[k % DAEMONS].admit(trigger(task.name, k), task) for k in range(24) for task in tasks
    ]
    results = await asyncio.gather(*calls)
    assert_batched(daemons, "admit")
    assert sum(r.decision is Admission.ACCEPT for r in results) == 2 * len(tasks)
    for task in tasks:
        assert await count(daemons[0], task.name, "pending") == 2
        assert await count(daemons[0], task.name, "skipped") == 22


async def test_batched_claims_of_several_daemons_fill_exactly_max_concurrent(
    daemons: list[PostgresRunRepository],
) -> None:
    names = [f"c{i}" for i in range(4)]
    waiting = [trigger(name, k) for k in range(12) for name in names]
    for run in waiting:
        await daemons[0].add(run)
    at = T0 + timedelta(seconds=5)
    claimed = await asyncio.gather(
        *(daemons[k % DAEMONS].claim(run, at, 3) for k, run in enumerate(waiting))
    )
    assert_batched(daemons, "claim")
    for name in names:
        winners = [c for c in claimed if c is not None and c.task_name == name]
        assert len(winners) == 3
        assert {w.status for w in winners} == {RunStatus.RUNNING}
        assert {w.start_at for w in winners} == {at}
        assert await count(daemons[0], name, "running") == 3
        assert await count(daemons[0], name, "pending") == 9


async def test_one_bad_item_fails_only_its_own_caller(
    daemons: list[PostgresRunRepository],
) -> None:
    repo = daemons[0]
    task = TaskSpec(name="mixed", run="true", max_concurrent=5)
    made = [trigger("mixed", k) for k in range(6)]
    # jsonb cannot hold NUL: the batch statement fails for all, then each call is sent
    # alone, so only the bad one fails.
    bad = Run(new_id(T0), "mixed", T0, TriggeredBy.CLOUD, external_execution_id="x\x00y")
    outcomes = await asyncio.gather(
        *(repo.admit(run, task) for run in [*made[:3], bad, *made[3:]]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[3], Exception)
    assert repo.batch_stats["admit"].failed_batches == 1
    admitted = [o for i, o in enumerate(outcomes) if i != 3]
    assert [a.run.id for a in admitted] == [r.id for r in made]  # type: ignore[union-attr]
    assert await count(repo, "mixed", "pending") == 6


async def test_ticks_saved_together_keep_the_latest_per_task(
    daemons: list[PostgresRunRepository],
) -> None:
    repo = daemons[0]
    await repo.save_last_tick("t00", T0 + timedelta(hours=1))
    saves = [(f"t{i:02d}", T0 + timedelta(seconds=s)) for s in (3, 1, 2) for i in range(40)]
    await asyncio.gather(*(repo.save_last_tick(name, tick) for name, tick in saves))
    assert_batched([repo], "save_last_tick")
    expected = {f"t{i:02d}": T0 + timedelta(seconds=3) for i in range(40)}
    expected["t00"] = T0 + timedelta(hours=1)  # a later tick is never moved back
    assert await repo.last_ticks() == expected


async def test_ends_and_retries_sent_together_by_several_daemons_keep_the_counts(
    daemons: list[PostgresRunRepository],
) -> None:
    names = ["r0", "r1", "r2"]
    started = [trigger(name, k).started(T0, pid=100 + k) for k in range(20) for name in names]
    for run in started:
        await daemons[0].add(run)
    end = T0 + timedelta(seconds=1)
    ended = [run.ended(EndReason.FAILED, end, 1) for run in started]
    retries = [
        Run(
            new_id(end),
            run.task_name,
            end,
            TriggeredBy.API,
            retry_attempt=1,
            retry_of_run_id=run.id,
        )
        if k % 2 == 0
        else None
        for k, run in enumerate(started)
    ]
    outcomes = await asyncio.gather(
        *(
            daemons[k % DAEMONS].replace(new, RunStatus.RUNNING, retry)
            for k, (new, retry) in enumerate(zip(ended, retries, strict=True))
        ),
        # The same ends again, from another daemon: each run is ended once.
        *(
            daemons[(k + 1) % DAEMONS].replace(new, RunStatus.RUNNING)
            for k, new in enumerate(ended)
        ),
    )
    assert_batched(daemons, "replace")
    assert sum(outcomes) == len(started)
    for name in names:
        assert await count(daemons[0], name, "running") == 0
        assert await count(daemons[0], name, "failed") == 20
        assert await count(daemons[0], name, "pending") <= 10
    for new in ended:
        stored = await daemons[0].get(new.id)
        assert stored is not None
        assert stored.end_reason is EndReason.FAILED
    stored_retries = [r for r in retries if r is not None and await daemons[0].get(r.id)]
    pending = sum([await count(daemons[0], name, "pending") for name in names])
    assert len(stored_retries) == pending


async def test_admits_that_take_slots_and_claims_of_other_daemons_share_max_concurrent(
    daemons: list[PostgresRunRepository],
) -> None:
    task = TaskSpec(name="mixed-slots", run="true", max_concurrent=3, queue_max=100)
    waiting = [trigger(task.name, k) for k in range(6)]
    for run in waiting:
        await daemons[0].add(run)
    at = T0 + timedelta(seconds=3)
    ticks = [
        Run(new_id(at), task.name, at + timedelta(seconds=k), TriggeredBy.CRON) for k in range(6)
    ]
    await asyncio.gather(
        *(daemons[1 + k % 2].claim(run, at, 3) for k, run in enumerate(waiting)),
        *(daemons[0].admit(tick, task, start_at=at) for tick in ticks),
    )
    assert await count(daemons[0], task.name, "running") == 3
    assert await count(daemons[0], task.name, "pending") == 9
