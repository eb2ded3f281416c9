"""The cron loop's bookkeeping, on the in-memory store and a clock that moves when told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapters.memory import FakeClock, InMemoryExecutor, InMemoryLogStore, InMemoryRunRepository
from app.runtime.dispatcher import Dispatcher
from app.runtime.scheduler import CronScheduler
from domain.run import RunStatus
from domain.tasks import CatchUp, TaskSpec

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class World:
    def __init__(self, *tasks: TaskSpec) -> None:
        self.repo = InMemoryRunRepository()
        self.clock = FakeClock(T0)
        self.tasks = {t.name: t for t in tasks}
        self.executor = InMemoryExecutor()
        self.dispatcher = Dispatcher(
            self.repo, InMemoryLogStore(), self.executor, self.clock, self.tasks
        )
        self.scheduler = CronScheduler(self.repo, self.dispatcher, self.clock, self.tasks)

    async def ticks(self, name: str) -> list[datetime]:
        return sorted(r.created_at for r in self.repo.runs.values() if r.task_name == name)

    async def look_at(self, seconds: float) -> None:
        self.clock.set(T0 + timedelta(seconds=seconds))
        assert await self.scheduler.fire_due(self.clock.now())


def every_second(name: str, **fields: object) -> TaskSpec:
    return TaskSpec(name=name, run="true", cron="* * * * * *", max_concurrent=100, **fields)  # type: ignore[arg-type]


def seconds(ticks: list[datetime]) -> list[float]:
    return [(t - T0).total_seconds() for t in ticks]


async def test_each_look_records_every_tick_due_since_the_last_once() -> None:
    world = World(every_second("a"), TaskSpec(name="b", run="true", cron="*/5 * * * * *"))
    await world.scheduler.load_state()
    for at in (0.5, 1.2, 1.7, 2.0, 3.4, 5.0, 5.1, 6.0):
        await world.look_at(at)
    # At 5.0 ticks 4 and 5 were due: 5 on time, 4 missed once (catch_up = latest).
    assert seconds(await world.ticks("a")) == [1, 2, 3, 4, 5, 6]
    assert seconds(await world.ticks("b")) == [5]
    assert world.scheduler.next_run_at("b", world.clock.now()) == T0 + timedelta(seconds=10)
    await world.dispatcher.shutdown()


async def test_after_a_long_gap_the_missed_ticks_follow_catch_up() -> None:
    world = World(
        every_second("latest"),
        every_second("all", catch_up=CatchUp.ALL, max_catch_up_runs=3),
        every_second("skip", catch_up=CatchUp.SKIP),
    )
    await world.scheduler.load_state()
    await world.look_at(1)
    await world.look_at(60)  # ticks 2..59 missed, 60 on time
    await world.look_at(61)
    assert seconds(await world.ticks("latest")) == [1, 59, 60, 61]
    assert seconds(await world.ticks("all")) == [1, 57, 58, 59, 60, 61]
    assert seconds(await world.ticks("skip")) == [1, 60, 61]
    await world.dispatcher.shutdown()


async def test_a_look_between_ticks_records_nothing() -> None:
    world = World(every_second("a"))
    await world.scheduler.load_state()
    await world.look_at(1.0)
    await world.look_at(1.5)
    await world.look_at(1.999)
    assert seconds(await world.ticks("a")) == [1]
    await world.dispatcher.shutdown()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_tick_with_a_free_slot_is_recorded_running_and_started_at_once() -> None:
    world = World(every_second("a"))
    await world.scheduler.load_state()
    await world.look_at(1.25)
    await settle()
    [run] = world.repo.runs.values()
    assert (run.status, run.start_at) == (RunStatus.RUNNING, T0 + timedelta(seconds=1.25))
    assert [p.spec.env["RUNWARDEN_RUN_ID"] for p in world.executor.started] == [run.id]
    await world.dispatcher.shutdown()


async def test_a_tick_of_a_busy_task_waits_its_turn() -> None:
    world = World(TaskSpec(name="a", run="true", cron="* * * * * *"))  # max_concurrent 1
    await world.scheduler.load_state()
    await world.look_at(1)
    await settle()
    await world.look_at(2)
    await settle()
    first, second = sorted(world.repo.runs.values(), key=lambda r: r.created_at)
    assert (first.status, second.status) == (RunStatus.RUNNING, RunStatus.PENDING)
    world.executor.started[0].finish(0)
    for _ in range(100):
        await settle()
        if len(world.executor.started) == 2:
            break
    assert world.repo.runs[second.id].status is RunStatus.RUNNING
    await world.dispatcher.shutdown()


async def test_ticks_catch_up_dropped_are_reported_as_missed() -> None:
    world = World(every_second("latest"), every_second("skip", catch_up=CatchUp.SKIP))
    reported: list[tuple[str, list[float], list[float]]] = []

    async def on_missed(task: TaskSpec, due: list[datetime], chosen: list[datetime]) -> None:
        reported.append((task.name, seconds(due), seconds(chosen)))

    world.scheduler = CronScheduler(
        world.repo, world.dispatcher, world.clock, world.tasks, on_missed=on_missed
    )
    await world.scheduler.load_state()
    await world.look_at(1.0)
    assert reported == []  # on time: nothing missed
    await world.look_at(6.0)  # ticks 2-5 were missed
    assert sorted(reported) == [
        ("latest", [2, 3, 4, 5, 6], [5, 6]),
        ("skip", [2, 3, 4, 5, 6], [6]),
    ]
    await world.dispatcher.shutdown()
