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
from domain.policies import Admission
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import OverlapPolicy, TaskKind, TaskSpec

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
TASK = TaskSpec(name="backup", run="true")


async def trigger(repo: InMemoryRunRepository, clock: FakeClock, task: TaskSpec) -> Run:
    admitted, created = await services.trigger_run(repo, clock, task)
    assert created
    return admitted.run


@pytest.fixture
def repo() -> InMemoryRunRepository:
    return InMemoryRunRepository()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def test_trigger_run_records_a_pending_api_run_at_the_clock_time(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await trigger(repo, clock, TASK)
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
    first = await trigger(repo, clock, TASK)
    clock.advance(0.002)
    second = await trigger(repo, clock, TASK)
    assert first.id < second.id


async def test_api_trigger_false_refuses_api_triggers(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    task = TaskSpec(name="nightly", run="true", api_trigger=False)
    with pytest.raises(TriggerForbidden):
        await trigger(repo, clock, task)
    assert await repo.active() == []


async def test_services_cannot_be_triggered(repo: InMemoryRunRepository, clock: FakeClock) -> None:
    with pytest.raises(NotTriggerable):
        await trigger(repo, clock, TaskSpec("web", "serve", kind=TaskKind.SERVICE))


def test_find_task_names_the_missing_task() -> None:
    with pytest.raises(TaskNotFound, match="nope"):
        services.find_task({"backup": TASK}, "nope")


async def test_a_cron_tick_is_recorded_once(repo: InMemoryRunRepository) -> None:
    first = await services.record_cron_tick(repo, TASK, T0)
    again = await services.record_cron_tick(repo, TASK, T0)
    assert first is not None
    assert (first.run.triggered_by, first.run.created_at) == (TriggeredBy.CRON, T0)
    assert again is None
    assert len(await repo.active()) == 1


async def test_the_first_ender_wins_and_the_second_is_told(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await trigger(repo, clock, TASK)
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
    run = await trigger(repo, clock, TASK)
    await services.end_run(repo, run, EndReason.STOPPED, T0)
    assert await services.start_run(repo, run, T0, pid=1) is None


async def test_get_run_checks_the_task(repo: InMemoryRunRepository, clock: FakeClock) -> None:
    run = await trigger(repo, clock, TASK)
    assert await services.get_run(repo, run.id, "backup") == run
    with pytest.raises(RunNotFound):
        await services.get_run(repo, run.id, "other")
    with pytest.raises(RunNotFound):
        await services.get_run(repo, "01NOSUCHRUN000000000000000")


async def test_only_active_runs_can_be_stopped(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    run = await trigger(repo, clock, TASK)
    await services.end_run(repo, run, EndReason.SKIPPED, T0)
    with pytest.raises(RunNotActive):
        await services.require_active(repo, run.id, "backup")


async def test_a_trigger_the_skip_policy_turns_away_is_recorded_skipped(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    task = TaskSpec(name="once", run="x", on_overlap=OverlapPolicy.SKIP)
    await trigger(repo, clock, task)
    admitted, created = await services.trigger_run(repo, clock, task)
    assert created
    assert admitted.decision is Admission.SKIP
    assert (admitted.run.end_reason, admitted.run.exit_code) == (EndReason.SKIPPED, -1)
    assert await repo.get(admitted.run.id) == admitted.run


async def test_a_cloud_trigger_is_idempotent_on_its_external_id(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    first, created = await services.trigger_run(repo, clock, TASK, "exec-1")
    again, created_again = await services.trigger_run(repo, clock, TASK, "exec-1")
    assert (created, created_again) == (True, False)
    assert again.run.id == first.run.id
    assert first.run.triggered_by is TriggeredBy.CLOUD


async def test_finishing_a_failed_run_records_its_retry_in_the_same_step(
    repo: InMemoryRunRepository, clock: FakeClock
) -> None:
    task = TaskSpec(name="flaky", run="x", retry_attempts=1, retry_delay=7.0)
    run = await trigger(repo, clock, task)
    running = await services.claim_run(repo, task, run, T0)
    assert running is not None
    finished = await services.finish_run(repo, task, running, EndReason.FAILED, T0, 1)
    assert finished is not None
    ended, retry = finished
    assert retry is not None
    assert await repo.get(retry.id) == retry
    assert retry.not_before == T0 + timedelta(seconds=7)
    assert (retry.retry_attempt, retry.retry_of_run_id) == (1, ended.id)
