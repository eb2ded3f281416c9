"""Admission and claiming under the overlap policy, against the fake and PostgreSQL alike.

The racing tests gather many calls at once: on PostgreSQL each runs in its own
transaction on its own connection, so only the per-task lock keeps the counts right.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from domain.listing import RunQuery, parse_status_filter
from domain.policies import Admission
from domain.ports import RunRepository
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import OverlapPolicy, TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def task(on_overlap: OverlapPolicy = OverlapPolicy.QUEUE, **fields: object) -> TaskSpec:
    return TaskSpec(name="job", run="true", on_overlap=on_overlap, **fields)  # type: ignore[arg-type]


def trigger(
    at: datetime = T0, by: TriggeredBy = TriggeredBy.API, external_id: str | None = None
) -> Run:
    return Run(new_id(at), "job", at, by, external_execution_id=external_id)


async def running(repo: RunRepository, at: datetime, started: datetime | None = None) -> Run:
    run = trigger(at).started(started or at, pid=100)
    await repo.add(run)
    return run


async def count(repo: RunRepository, status: str) -> int:
    query = RunQuery(task_name="job", status=parse_status_filter(status))
    return (await repo.list(query)).total


async def test_a_trigger_with_a_free_slot_is_stored_pending(repo: RunRepository) -> None:
    run = trigger()
    admitted = await repo.admit(run, task())
    assert admitted.decision is Admission.ACCEPT
    assert admitted.run == run
    assert admitted.to_stop == ()
    assert await repo.get(run.id) == run


async def test_skip_policy_records_a_skipped_run_and_changes_nothing_else(
    repo: RunRepository,
) -> None:
    busy = await running(repo, T0)
    run = trigger(T0 + timedelta(seconds=5))
    admitted = await repo.admit(run, task(OverlapPolicy.SKIP))
    assert admitted.decision is Admission.SKIP
    assert admitted.to_stop == ()
    skipped = admitted.run
    assert (skipped.id, skipped.status, skipped.end_reason) == (
        run.id,
        RunStatus.ENDED,
        EndReason.SKIPPED,
    )
    assert skipped.exit_code == EXIT_NOT_EXECUTED
    assert (skipped.start_at, skipped.end_at) == (None, run.created_at)
    assert await repo.get(run.id) == skipped
    assert await repo.get(busy.id) == busy
    assert await repo.active("job") == [busy]


async def test_terminate_policy_accepts_and_names_the_oldest_running_run(
    repo: RunRepository,
) -> None:
    # Created first but started last: age is counted from the start.
    younger = await running(repo, T0, started=T0 + timedelta(seconds=10))
    older = await running(repo, T0 + timedelta(seconds=1), started=T0 + timedelta(seconds=2))
    run = trigger(T0 + timedelta(minutes=1))
    admitted = await repo.admit(run, task(OverlapPolicy.TERMINATE, max_concurrent=2))
    assert admitted.decision is Admission.TERMINATE
    assert list(admitted.to_stop) == [older]
    assert admitted.run == run
    assert await repo.get(run.id) == run
    assert await repo.get(younger.id) == younger
    assert await repo.get(older.id) == older


async def test_queue_policy_turns_away_triggers_beyond_queue_max(repo: RunRepository) -> None:
    spec = task(OverlapPolicy.QUEUE, max_concurrent=1, queue_max=2)
    decisions = [
        (await repo.admit(trigger(T0 + timedelta(seconds=i)), spec)).decision for i in range(4)
    ]
    assert decisions == [Admission.ACCEPT] * 3 + [Admission.SKIP]
    assert await count(repo, "pending") == 3
    assert await count(repo, "skipped") == 1


async def test_racing_triggers_never_exceed_the_skip_policy(crowded_repo: RunRepository) -> None:
    spec = task(OverlapPolicy.SKIP, max_concurrent=2)
    made = [trigger(T0 + timedelta(milliseconds=i)) for i in range(20)]
    results = await asyncio.gather(*(crowded_repo.admit(run, spec) for run in made))
    assert sorted(r.decision for r in results).count(Admission.ACCEPT) == 2
    assert await count(crowded_repo, "pending") == 2
    assert await count(crowded_repo, "skipped") == 18
    assert (await crowded_repo.list(RunQuery(task_name="job"))).total == 20
    for result in results:
        assert await crowded_repo.get(result.run.id) == result.run


async def test_a_repeated_cloud_execution_returns_the_first_run(repo: RunRepository) -> None:
    first = trigger(by=TriggeredBy.CLOUD, external_id="exec-1")
    again = dataclasses.replace(first, id=new_id(), created_at=T0 + timedelta(seconds=1))
    assert (await repo.admit(first, task())).run == first
    repeated = await repo.admit(again, task())
    assert (repeated.run, repeated.decision) == (first, Admission.ACCEPT)
    assert await repo.get(again.id) is None


async def test_racing_triggers_of_one_cloud_execution_record_one_run(
    crowded_repo: RunRepository,
) -> None:
    made = [
        trigger(T0 + timedelta(milliseconds=i), TriggeredBy.CLOUD, "exec-race") for i in range(50)
    ]
    results = await asyncio.gather(*(crowded_repo.admit(run, task()) for run in made))
    assert len({r.run.id for r in results}) == 1
    assert {r.decision for r in results} == {Admission.ACCEPT}
    assert (await crowded_repo.list(RunQuery(task_name="job"))).total == 1


async def test_a_repeated_cron_tick_returns_the_stored_run_as_skipped(
    repo: RunRepository,
) -> None:
    tick = trigger(by=TriggeredBy.CRON)
    again = dataclasses.replace(tick, id=new_id())
    assert (await repo.admit(tick, task())).decision is Admission.ACCEPT
    repeated = await repo.admit(again, task())
    assert (repeated.run, repeated.decision) == (tick, Admission.SKIP)
    assert await repo.get(again.id) is None
    # A tick recorded by ``add_cron_run`` is recognised too.
    later = dataclasses.replace(tick, id=new_id(), created_at=T0 + timedelta(minutes=1))
    assert await repo.add_cron_run(later)
    assert (await repo.admit(dataclasses.replace(later, id=new_id()), task())).run == later


async def test_adding_a_recorded_cron_tick_again_is_refused(repo: RunRepository) -> None:
    tick = trigger(by=TriggeredBy.CRON)
    await repo.add(tick)
    with pytest.raises(ValueError, match="conflicts with a stored run"):
        await repo.add(dataclasses.replace(tick, id=new_id()))
    assert (await repo.list(RunQuery(task_name="job"))).total == 1


async def test_a_run_of_another_task_is_not_admitted(repo: RunRepository) -> None:
    with pytest.raises(ValueError, match="task"):
        await repo.admit(trigger(), dataclasses.replace(task(), name="other"))
    assert await repo.active() == []


async def test_claim_starts_a_pending_run_when_a_slot_is_free(repo: RunRepository) -> None:
    run = trigger()
    await repo.add(run)
    at = T0 + timedelta(seconds=3)
    claimed = await repo.claim(run, at, max_concurrent=1)
    assert claimed == run.started(at)
    assert await repo.get(run.id) == claimed


async def test_claim_waits_while_every_slot_is_taken(repo: RunRepository) -> None:
    await running(repo, T0)
    run = trigger(T0 + timedelta(seconds=1))
    await repo.add(run)
    assert await repo.claim(run, T0 + timedelta(seconds=2), max_concurrent=1) is None
    assert await repo.get(run.id) == run
    assert await repo.claim(run, T0 + timedelta(seconds=2), max_concurrent=2) is not None


async def test_claim_ignores_runs_that_are_not_pending(repo: RunRepository) -> None:
    stopped = trigger().ended(EndReason.STOPPED, T0)
    await repo.add(stopped)
    assert await repo.claim(stopped, T0, max_concurrent=5) is None
    assert await repo.get(stopped.id) == stopped
    assert await repo.claim(trigger(), T0, max_concurrent=5) is None


async def test_racing_claims_fill_exactly_max_concurrent_slots(
    crowded_repo: RunRepository,
) -> None:
    waiting = [trigger(T0 + timedelta(milliseconds=i)) for i in range(10)]
    for run in waiting:
        await crowded_repo.add(run)
    at = T0 + timedelta(seconds=1)
    claimed = await asyncio.gather(*(crowded_repo.claim(r, at, max_concurrent=3) for r in waiting))
    winners = [c for c in claimed if c is not None]
    assert len(winners) == 3
    assert await count(crowded_repo, "running") == 3
    assert await count(crowded_repo, "pending") == 7
    for winner in winners:
        assert await crowded_repo.get(winner.id) == winner


async def test_a_trigger_with_start_at_and_a_free_slot_is_stored_running(
    repo: RunRepository,
) -> None:
    run = trigger()
    at = T0 + timedelta(milliseconds=5)
    admitted = await repo.admit(run, task(max_concurrent=2), start_at=at)
    assert (admitted.decision, admitted.run) == (Admission.ACCEPT, run.started(at))
    assert await repo.get(run.id) == run.started(at)


async def test_a_trigger_with_start_at_waits_behind_queued_runs_or_a_full_task(
    repo: RunRepository,
) -> None:
    spec = task(max_concurrent=2)
    await running(repo, T0)
    queued = trigger(T0 + timedelta(seconds=1))
    await repo.add(queued)
    behind = trigger(T0 + timedelta(seconds=2))
    at = T0 + timedelta(seconds=3)
    # A slot is free, but `queued` was first: it stays first in line.
    assert (await repo.admit(behind, spec, start_at=at)).run == behind
    assert await repo.get(behind.id) == behind
    full = trigger(T0 + timedelta(seconds=4))
    await repo.claim(queued, at, max_concurrent=2)
    assert (await repo.admit(full, task(max_concurrent=1), start_at=at)).run == full
