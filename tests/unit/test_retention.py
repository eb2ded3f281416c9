"""Retention passes over the in-memory store: only ended runs go, per task settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.memory import FakeClock, InMemoryRunRepository
from app.runtime import retention
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec

T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def seed(repo: InMemoryRunRepository, task: str, count: int, *, active: int = 0) -> None:
    for i in range(count + active):
        at = T0 + timedelta(hours=i)
        run = Run(id=f"{task}-{i:04d}", task_name=task, created_at=at, triggered_by=TriggeredBy.API)
        if i < count:
            run = run.started(at).ended(EndReason.SUCCESS, at + timedelta(minutes=1), 0)
        await repo.add(run)


async def test_keep_runs_keeps_the_newest_ended_runs_and_every_active_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(retention, "BATCH", 7)  # several batches
    repo = InMemoryRunRepository()
    await seed(repo, "keep", 30, active=2)
    await seed(repo, "other", 5)
    tasks = {"keep": TaskSpec("keep", "x", keep_runs=10), "other": TaskSpec("other", "x")}
    removed = await retention.prune_once(repo, FakeClock(T0 + timedelta(days=30)), tasks)
    assert removed == 20
    left = sorted(r.id for r in repo.runs.values() if r.task_name == "keep")
    assert left == [f"keep-{i:04d}" for i in range(20, 32)]
    assert sum(1 for r in repo.runs.values() if r.task_name == "other") == 5


async def test_keep_for_removes_runs_that_ended_too_long_ago() -> None:
    repo = InMemoryRunRepository()
    await seed(repo, "aged", 48)
    clock = FakeClock(T0 + timedelta(hours=48))
    tasks = {"aged": TaskSpec("aged", "x", keep_for=24 * 3600.0)}
    await retention.prune_once(repo, clock, tasks)
    left = [r for r in repo.runs.values() if r.task_name == "aged"]
    assert len(left) == 24
    assert all(r.end_at is not None and r.end_at >= clock.now() - timedelta(hours=24) for r in left)
    assert {r.status for r in left} == {RunStatus.ENDED}
