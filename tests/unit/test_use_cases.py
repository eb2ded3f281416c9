"""The use cases of domain/services.py against the in-memory fakes and a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory import FakeClock, InMemoryRunRepository
from domain import services
from domain.errors import (
    NotTriggerable,
    RunNotActive,
    RunNotFound,
    TaskNotFound,
    TriggerForbidden,
)
from domain.run import EndReason, RunStatus, TriggeredBy
from domain.tasks import TaskKind, TaskSpec

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
TASK = TaskSpec(name="backup", run="true")


@pytest.fixture
def repo() -> InMemoryRunRepository:
    return InMemoryRunRepository()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def test_trigger_run_records_a_pending_api_run_at_the_clock_time(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await services.trigger_run(repo, clock, TASK)
    assert (run.status, run.triggered_by, run.created_at) == (
        RunStatus.PENDING,
        TriggeredBy.API,
        T0,
    )
    assert await repo.get(run.id) == run
    assert len(run.id) == 26


async def test_run_ids_sort_with_creation_time(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    first = await services.trigger_run(repo, clock, TASK)
    clock.advance(0.002)
    second = await services.trigger_run(repo, clock, TASK)
    assert first.id < second.id


async def test_api_trigger_false_refuses_api_triggers(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    task = TaskSpec(name="nightly", run="true", api_trigger=False)
    with pytest.raises(TriggerForbidden):
        await services.trigger_run(repo, clock, task)
    assert await repo.active() == []


async def test_services_cannot_be_triggered(repo: InMemoryRunRepository, clock: FakeClock) -> None:
    with pytest.raises(NotTriggerable):
        await services.trigger_run(repo, clock, TaskSpec("web", "serve", kind=TaskKind.SERVICE))


def test_find_task_names_the_missing_task() -> None:
    with pytest.raises(TaskNotFound, match="nope"):
        services.find_task({"backup": TASK}, "nope")


async def test_a_cron_tick_is_recorded_once(repo: InMemoryRunRepository) -> None:
    first = await services.record_cron_tick(repo, TASK, T0)
    again = await services.record_cron_tick(repo, TASK, T0)
    assert first is not None
    assert (first.triggered_by, first.created_at) == (TriggeredBy.CRON, T0)
    assert again is None
    assert len(await repo.active()) == 1


async def test_the_first_ender_wins_and_the_second_is_told(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await services.trigger_run(repo, clock, TASK)
    running = await services.start_run(repo, run, T0, pid=10)
    assert running is not None
    stopped = await services.end_run(repo, running, EndReason.STOPPED, T0)
    late = await services.end_run(repo, running, EndReason.SUCCESS, T0, 0)
    assert stopped is not None
    assert late is None
    assert (await services.get_run(repo, run.id)).end_reason is EndReason.STOPPED


async def test_starting_a_run_stopped_while_queued_reports_none(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await services.trigger_run(repo, clock, TASK)
    await services.end_run(repo, run, EndReason.STOPPED, T0)
    assert await services.start_run(repo, run, T0, pid=1) is None


async def test_get_run_checks_the_task(repo: InMemoryRunRepository, clock: FakeClock) -> None:
    run = await services.trigger_run(repo, clock, TASK)
    assert await services.get_run(repo, run.id, "backup") == run
    with pytest.raises(RunNotFound):
        await services.get_run(repo, run.id, "other")
    with pytest.raises(RunNotFound):
        await services.get_run(repo, "01NOSUCHRUN000000000000000")


async def test_only_active_runs_can_be_stopped(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await services.trigger_run(repo, clock, TASK)
    await services.end_run(repo, run, EndReason.SKIPPED, T0)
    with pytest.raises(RunNotActive):
        await services.require_active(repo, run.id, "backup")


async def test_reconcile_crashes_running_runs_and_resumes_pending_ones_in_order(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    crashed = await services.start_run(
        repo, await services.trigger_run(repo, clock, TASK), T0, pid=5
    )
    clock.advance(1)
    waiting = await services.trigger_run(repo, clock, TASK)
    clock.advance(1)
    later = await services.trigger_run(repo, clock, TASK)
    orphan = await services.trigger_run(repo, clock, TaskSpec(name="removed", run="true"))
    clock.advance(60)
    resumed = await services.reconcile_on_start(repo, clock, {"backup"})
    assert [r.id for r in resumed] == [waiting.id, later.id]
    assert crashed is not None
    after = await services.get_run(repo, crashed.id)
    assert (after.end_reason, after.exit_code, after.end_at) == (
        EndReason.CRASHED,
        -2,
        T0 + timedelta(seconds=62),
    )
    skipped = await services.get_run(repo, orphan.id)
    assert (skipped.end_reason, skipped.exit_code) == (EndReason.SKIPPED, -1)
