"""RunRepository.counts and last_ended (the runs summary), and delete taking the log along.

Run against the in-memory fake and PostgreSQL alike; on PostgreSQL ``counts`` reads the
trigger-kept ``run_counts`` table, so these tests also check that the trigger keeps up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain import services
from domain.logs import LogLine, LogStream
from domain.ports import RunCount, RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from tests.contract.conftest import Storage, new_id

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def pending(task: str, at: datetime = T0) -> Run:
    return Run(new_id(at), task, at, TriggeredBy.API)


def ended(task: str, reason: EndReason, end_at: datetime, run_id: str | None = None) -> Run:
    run = Run(run_id or new_id(end_at), task, end_at - timedelta(seconds=5), TriggeredBy.API)
    if reason is not EndReason.SKIPPED:
        run = run.started(end_at - timedelta(seconds=4))
    return run.ended(reason, end_at, 0 if reason is EndReason.SUCCESS else 1)


def as_dict(counts: list[RunCount]) -> dict[tuple[str, str, str | None], int]:
    return {
        (c.task_name, c.status.value, c.end_reason.value if c.end_reason else None): c.n
        for c in counts
    }


async def test_counts_follow_inserts_transitions_and_deletes(repo: RunRepository) -> None:
    first, second = pending("a"), pending("a")
    await repo.add(first)
    await repo.add(second)
    await repo.add(ended("b", EndReason.FAILED, T0))
    assert as_dict(list(await repo.counts())) == {
        ("a", "pending", None): 2,
        ("b", "ended", "failed"): 1,
    }

    running = first.started(T0)
    assert await repo.replace(running, RunStatus.PENDING)
    assert await repo.replace(running.ended(EndReason.SUCCESS, T0, 0), RunStatus.RUNNING)
    assert await repo.delete(first.id)

    # Counters that fell back to zero are not reported.
    assert as_dict(list(await repo.counts())) == {
        ("a", "pending", None): 1,
        ("b", "ended", "failed"): 1,
    }


async def test_counts_of_an_empty_store_are_empty(repo: RunRepository) -> None:
    assert list(await repo.counts()) == []


async def test_last_ended_is_the_latest_end_among_the_reasons(repo: RunRepository) -> None:
    reasons = {EndReason.FAILED, EndReason.TIMEOUT}
    await repo.add(ended("a", EndReason.FAILED, T0))
    latest = ended("b", EndReason.TIMEOUT, T0 + timedelta(minutes=2))
    await repo.add(latest)
    await repo.add(ended("a", EndReason.FAILED, T0 + timedelta(minutes=1)))
    # Later, but with reasons not asked for, or not ended at all.
    await repo.add(ended("a", EndReason.SUCCESS, T0 + timedelta(minutes=5)))
    await repo.add(ended("a", EndReason.STOPPED, T0 + timedelta(minutes=6)))
    await repo.add(pending("a", T0 + timedelta(minutes=7)))

    assert await repo.last_ended(reasons) == latest


async def test_last_ended_breaks_a_tie_on_end_time_by_the_greater_id(
    repo: RunRepository,
) -> None:
    low, high = sorted([new_id(T0), new_id(T0)])
    await repo.add(ended("a", EndReason.CRASHED, T0, high))
    await repo.add(ended("a", EndReason.FAILED, T0, low))

    found = await repo.last_ended({EndReason.FAILED, EndReason.CRASHED})

    assert found is not None
    assert found.id == high


async def test_last_ended_is_none_without_a_matching_run(repo: RunRepository) -> None:
    await repo.add(ended("a", EndReason.SUCCESS, T0))
    assert await repo.last_ended({EndReason.FAILED}) is None
    assert await repo.last_ended(set()) is None


async def test_the_summary_counts_failures_apart_from_stops_and_skips(
    repo: RunRepository,
) -> None:
    for reason in EndReason:
        await repo.add(ended("a", reason, T0))
    await repo.add(pending("a"))

    summary = await services.summarize_runs(repo)

    assert (summary.total, summary.success, summary.failed) == (8, 1, 4)
    assert summary.last_failure is not None
    assert summary.last_failure.end_reason in services.FAILURE_REASONS


async def test_deleting_a_run_removes_its_log(storage: Storage) -> None:
    run = ended("a", EndReason.SUCCESS, T0)
    await storage.runs.add(run)
    await storage.logs.append(run.id, [LogLine(0, T0, LogStream.STDOUT, "hello")])

    removed = await services.delete_run(storage.runs, storage.logs, run.id, "a")

    assert removed.id == run.id
    assert await storage.runs.get(run.id) is None
    assert await storage.logs.read(run.id, 0, 10) == []
    assert await storage.logs.stats(run.id) == (0, 0)
