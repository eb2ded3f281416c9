"""RunRepository.newest: each task's newest runs in one read (the dashboard's strips).

Run against the in-memory fake and PostgreSQL alike; both must agree with the listing's
default order, as ``list`` with ``task_name`` and ``limit`` gives it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.listing import ListedRun, RunQuery, StatusFilter
from domain.ports import RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from tests.contract.conftest import new_id

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def run_at(task: str, minute: int, reason: EndReason | None) -> Run:
    created = T0 + timedelta(minutes=minute)
    run = Run(new_id(created), task, created, TriggeredBy.API)
    if reason is None:
        return run
    run = run.started(created)
    return run.ended(reason, created + timedelta(seconds=3), 0)


async def test_newest_gives_each_tasks_newest_runs_in_the_listings_order(
    repo: RunRepository,
) -> None:
    runs = [run_at("a", m, EndReason.SUCCESS if m % 2 else EndReason.FAILED) for m in range(6)]
    runs += [run_at("b", 1, EndReason.SUCCESS), run_at("a", 9, None)]  # a's newest: pending
    # Two runs of one tick: ties break on the id, as in the listing.
    runs += [run_at("c", 4, EndReason.SUCCESS), run_at("c", 4, EndReason.TIMEOUT)]
    for run in runs:
        await repo.add(run)

    found = await repo.newest(["a", "b", "c", "nothing"], 3)

    for name in ("a", "b", "c"):
        expected = (await repo.list(RunQuery(task_name=name, limit=3))).runs
        assert list(found[name]) == list(expected)
        assert all(isinstance(r, ListedRun) for r in found[name])
    assert [r.status for r in found["a"]] == [RunStatus.PENDING, RunStatus.ENDED, RunStatus.ENDED]
    assert len(found["b"]) == 1
    assert found["nothing"] == []


async def test_newest_ended_only_skips_the_active_runs_on_top(repo: RunRepository) -> None:
    for run in [
        run_at("a", 0, EndReason.SUCCESS),
        run_at("a", 1, EndReason.CRASHED),
        run_at("a", 2, None),
        run_at("a", 3, None),
        run_at("b", 0, None),
    ]:
        await repo.add(run)

    found = await repo.newest(["a", "b"], 1, ended_only=True)

    ended = StatusFilter(phases=frozenset({RunStatus.ENDED}))
    expected = (await repo.list(RunQuery(task_name="a", status=ended, limit=1))).runs
    assert list(found["a"]) == list(expected)
    assert found["a"][0].end_reason is EndReason.CRASHED
    assert found["b"] == []


async def test_newest_of_no_names_or_no_rows_is_empty(repo: RunRepository) -> None:
    assert await repo.newest([], 20) == {}
    assert await repo.newest(["a\x00b"], 20) == {"a\x00b": []}
