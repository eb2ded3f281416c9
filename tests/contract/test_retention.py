"""Retries, pruning and cron tick state, against the fake and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from domain.logs import LogLine, LogStream
from domain.ports import RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from tests.contract.conftest import Storage, new_id

T0 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


def run_of(task: str, minute: int, **fields: object) -> Run:
    at = T0 + timedelta(minutes=minute)
    return Run(new_id(at), task, at, TriggeredBy.API, **fields)  # type: ignore[arg-type]


def ended_at(task: str, minute: int, ended_minute: int | None = None) -> Run:
    run = run_of(task, minute)
    end = T0 + timedelta(minutes=minute if ended_minute is None else ended_minute)
    return run.started(run.created_at).ended(EndReason.SUCCESS, end, 0)


async def stored_ids(repo: RunRepository, runs: list[Run]) -> set[str]:
    return {r.id for r in runs if await repo.get(r.id) is not None}


async def prune_all(
    repo: RunRepository, keep: int | None, before: datetime | None, batch: int
) -> list[int]:
    """Prune in batches until a call deletes nothing; the count of each call."""
    counts = [await repo.prune("job", keep, before, batch)]
    while counts[-1]:
        counts.append(await repo.prune("job", keep, before, batch))
    return counts


async def test_a_retry_is_stored_with_the_end_it_follows(repo: RunRepository) -> None:
    run = run_of("job", 0).started(T0)
    await repo.add(run)
    failed = run.ended(EndReason.FAILED, T0 + timedelta(seconds=1), 3)
    retry = run_of(
        "job", 1, retry_attempt=1, retry_of_run_id=run.id, not_before=T0 + timedelta(seconds=61)
    )
    assert await repo.replace(failed, RunStatus.RUNNING, retry) is True
    assert await repo.get(run.id) == failed
    assert await repo.get(retry.id) == retry
    assert await repo.active("job") == [retry]


async def test_a_retry_is_not_stored_when_another_actor_ended_the_run(
    repo: RunRepository,
) -> None:
    run = run_of("job", 0).started(T0)
    await repo.add(run)
    stopped = run.ended(EndReason.STOPPED, T0 + timedelta(seconds=1), -1)
    assert await repo.replace(stopped, RunStatus.RUNNING)
    failed = run.ended(EndReason.FAILED, T0 + timedelta(seconds=2), 1)
    retry = run_of("job", 1, retry_attempt=1, retry_of_run_id=run.id)
    assert await repo.replace(failed, RunStatus.RUNNING, retry) is False
    assert await repo.get(retry.id) is None
    assert await repo.get(run.id) == stopped


async def test_a_conflicting_retry_undoes_the_end_it_follows(repo: RunRepository) -> None:
    run = run_of("job", 0).started(T0)
    other = run_of("job", 1)
    await repo.add(run)
    await repo.add(other)
    failed = run.ended(EndReason.FAILED, T0 + timedelta(seconds=1), 1)
    clash = dataclasses.replace(other, retry_attempt=1, retry_of_run_id=run.id)
    with pytest.raises(ValueError, match="conflicts with a stored run"):
        await repo.replace(failed, RunStatus.RUNNING, clash)
    assert await repo.get(run.id) == run
    assert await repo.get(other.id) == other


async def test_retries_stored_while_other_runs_start_never_deadlock(
    crowded_repo: RunRepository,
) -> None:
    # Ending with a retry moves counters (ended, running) then (pending); starting moves
    # (pending, running): without a common lock order these transactions deadlock.
    running = [run_of("job", i).started(T0) for i in range(10)]
    waiting = [run_of("job", i) for i in range(10)]
    for run in running + waiting:
        await crowded_repo.add(run)

    async def fail_and_retry(run: Run) -> bool:
        retry = run_of("job", 30, retry_attempt=1, retry_of_run_id=run.id)
        failed = run.ended(EndReason.FAILED, T0 + timedelta(minutes=1), 1)
        return await crowded_repo.replace(failed, RunStatus.RUNNING, retry)

    async def start(run: Run) -> bool:
        return await crowded_repo.replace(run.started(T0), RunStatus.PENDING)

    outcomes = await asyncio.gather(
        *(fail_and_retry(r) for r in running), *(start(r) for r in waiting)
    )
    assert outcomes == [True] * 20
    assert len(await crowded_repo.active("job")) == 20


async def test_prune_keeps_the_newest_ended_runs_and_every_active_one(
    repo: RunRepository,
) -> None:
    # Two pairs share a created_at: the newest-first order breaks ties on the id.
    ended = [ended_at("job", minute) for minute in (0, 1, 2, 2, 3, 4, 5, 5, 6, 7)]
    active = [run_of("job", -5), run_of("job", -4).started(T0)]
    elsewhere = [ended_at("other", minute) for minute in range(3)]
    for run in ended + active + elsewhere:
        await repo.add(run)
    assert await prune_all(repo, keep=4, before=None, batch=3) == [3, 3, 0]
    newest = sorted(ended, key=lambda r: (r.created_at, r.id))[-4:]
    assert await stored_ids(repo, ended) == {r.id for r in newest}
    assert await stored_ids(repo, active + elsewhere) == {r.id for r in active + elsewhere}
    assert await prune_all(repo, keep=0, before=None, batch=100) == [4, 0]
    assert await repo.active("job") == active


async def test_prune_deletes_runs_that_ended_before_the_cutoff(repo: RunRepository) -> None:
    # Ended at minutes 10, 1, 12, 3, 14: the end, not the creation, is what ages a run.
    ended = [ended_at("job", m, e) for m, e in ((0, 10), (1, 1), (2, 12), (3, 3), (4, 14))]
    pending = run_of("job", -60)
    for run in [*ended, pending]:
        await repo.add(run)
    cutoff = T0 + timedelta(minutes=12)
    assert await prune_all(repo, keep=None, before=cutoff, batch=2) == [2, 1, 0]
    assert await stored_ids(repo, ended) == {ended[2].id, ended[4].id}
    assert await repo.get(pending.id) == pending


async def test_prune_applies_both_limits(repo: RunRepository) -> None:
    ended = [ended_at("job", minute) for minute in range(6)]
    for run in ended:
        await repo.add(run)
    # Keep the newest three, but of those the one ended at minute 3 is too old.
    assert await prune_all(repo, keep=3, before=T0 + timedelta(minutes=4), batch=10) == [4, 0]
    assert await stored_ids(repo, ended) == {ended[4].id, ended[5].id}
    assert await repo.prune("job", None, None, 10) == 0


async def test_pruned_and_deleted_runs_take_their_logs_with_them(storage: Storage) -> None:
    runs = [ended_at("job", minute) for minute in range(3)]
    line = LogLine(0, T0, LogStream.STDOUT, "output")
    for run in runs:
        await storage.runs.add(run)
        await storage.logs.append(run.id, [line])
    assert await storage.runs.prune("job", 2, None, 10) == 1
    assert await storage.logs.read(runs[0].id, 0, 10) == []
    assert await storage.logs.stats(runs[0].id) == (0, 0)
    assert await storage.runs.delete(runs[1].id)
    assert await storage.logs.stats(runs[1].id) == (0, 0)
    assert await storage.logs.read(runs[2].id, 0, 10) == [line]


async def test_last_ticks_are_kept_per_task_and_never_move_back(repo: RunRepository) -> None:
    assert await repo.last_ticks() == {}
    await repo.save_last_tick("job", T0 + timedelta(minutes=5))
    await repo.save_last_tick("other", T0)
    await repo.save_last_tick("job", T0 + timedelta(minutes=1))
    assert await repo.last_ticks() == {"job": T0 + timedelta(minutes=5), "other": T0}
    await repo.save_last_tick("other", T0 + timedelta(microseconds=1))
    ticks = await repo.last_ticks()
    assert ticks["other"] == T0 + timedelta(microseconds=1)
    assert ticks["other"].utcoffset() == timedelta(0)
