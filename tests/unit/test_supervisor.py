"""The service supervisor: slots, replacement, backoff, giving up, stop and restart.

Processes are fakes the test finishes; the restart sleep is a fake that records its delays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from adapters.memory import (
    FakeClock,
    InMemoryExecutor,
    InMemoryLogStore,
    InMemoryProcess,
    InMemoryRunRepository,
)
from adapters.memory_cluster import InMemoryCluster
from app.runtime.supervisor import ServiceSupervisor
from domain.cluster import NodeInfo
from domain.errors import TaskNotFound
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import Backoff, TaskKind, TaskSpec


class FakeSleep:
    """Records each restart delay; while ``hold`` is set, sleeps until cancelled."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hold = False

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.hold:
            await asyncio.Event().wait()
        await asyncio.sleep(0)


def service(name: str = "web", **options: object) -> TaskSpec:
    return TaskSpec(name=name, run="serve", kind=TaskKind.SERVICE, **options)  # type: ignore[arg-type]


NODE = NodeInfo("7a4f3c1e-0000-4000-8000-000000000001", "host", 1, "boot", "test", "hash")


class World:
    def __init__(self, *specs: TaskSpec) -> None:
        self.repo = InMemoryRunRepository()
        self.logs = InMemoryLogStore()
        self.clock = FakeClock()
        self.executor = InMemoryExecutor()
        self.sleep = FakeSleep()
        self.cluster = InMemoryCluster(self.repo, self.clock)
        self.supervisor = ServiceSupervisor(
            self.repo,
            self.logs,
            self.executor,
            self.clock,
            {s.name: s for s in specs},
            self.cluster,
            node=lambda: NODE.id,
            sleep=self.sleep,
        )

    async def start(self) -> None:
        """Join as the only node, then start the supervisor."""
        await self.cluster.register(NODE)
        await self.supervisor.start()

    def runs(self, replica: int | None = None) -> list[Run]:
        runs = sorted(self.repo.runs.values(), key=lambda r: r.id)
        return [r for r in runs if replica is None or r.replica_index == replica]

    def process_of(self, run: Run) -> InMemoryProcess:
        return next(p for p in self.executor.started if p.pid == run.pid)


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check`` holds; the state lives in fakes, so there is no event to await."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_world() -> AsyncIterator[Callable[..., Awaitable[World]]]:
    """Started worlds, stopped after the test so no slot task outlives it."""
    made: list[World] = []

    async def make(*specs: TaskSpec) -> World:
        made.append(World(*specs))
        await made[-1].start()
        return made[-1]

    yield make
    for world in made:
        await world.supervisor.stop()


async def test_each_instance_runs_as_one_api_run_with_its_replica_index(make_world) -> None:
    world = await make_world(service(instances=3, env={"PORT": "80"}))
    runs = world.supervisor.instances("web")
    assert [r.replica_index for r in runs] == [0, 1, 2]
    assert all(r.status is RunStatus.RUNNING and r.triggered_by is TriggeredBy.API for r in runs)
    assert [await world.repo.get(r.id) for r in runs] == runs
    envs = [p.spec.env for p in world.executor.started]
    assert [e["RUNWARDEN_REPLICA"] for e in envs] == ["0", "1", "2"]
    assert all(e["PORT"] == "80" and e["RUNWARDEN_TASK"] == "web" for e in envs)


async def test_tasks_in_the_configuration_are_not_started(make_world) -> None:
    world = await make_world(TaskSpec(name="job", run="true"), service(instances=1))
    assert [r.task_name for r in world.runs()] == ["web"]
    with pytest.raises(TaskNotFound):
        world.supervisor.instances("job")


async def test_a_dead_instance_is_replaced_in_the_same_slot(make_world) -> None:
    world = await make_world(service(instances=2))
    dead = world.supervisor.instances("web")[1]
    world.process_of(dead).finish(3)
    await eventually(lambda: len(world.runs(replica=1)) == 2)
    await eventually(lambda: world.runs(replica=1)[1].status is RunStatus.RUNNING)
    ended = await world.repo.get(dead.id)
    assert ended is not None
    assert (ended.end_reason, ended.exit_code) == (EndReason.FAILED, 3)
    assert world.sleep.delays == [1.0]
    assert len(world.runs(replica=0)) == 1


async def test_an_instance_killed_by_a_signal_ends_failed_and_is_replaced(make_world) -> None:
    world = await make_world(service())
    dead = world.supervisor.instances("web")[0]
    world.process_of(dead).finish(-1)
    await eventually(lambda: len(world.runs()) == 2)
    ended = await world.repo.get(dead.id)
    assert ended is not None
    assert (ended.end_reason, ended.exit_code) == (EndReason.FAILED, -1)


async def test_an_instance_that_exits_zero_ends_success_and_is_still_replaced(make_world) -> None:
    world = await make_world(service())
    dead = world.supervisor.instances("web")[0]
    world.process_of(dead).finish(0)
    await eventually(lambda: len(world.runs()) == 2)
    ended = await world.repo.get(dead.id)
    assert ended is not None
    assert ended.end_reason is EndReason.SUCCESS


async def test_restart_delays_double_up_to_a_minute(make_world) -> None:
    world = World(service(restart_delay=1.0, start_retries=10))
    world.executor.exit_at_once = 1
    await world.start()
    await eventually(lambda: world.supervisor.given_up("web") == [0])
    assert world.sleep.delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    await world.supervisor.stop()


async def test_linear_backoff_grows_by_the_base_delay(make_world) -> None:
    world = World(service(restart_delay=0.5, restart_backoff=Backoff.LINEAR, start_retries=4))
    world.executor.exit_at_once = 1
    await world.start()
    await eventually(lambda: world.supervisor.given_up("web") == [0])
    assert world.sleep.delays == [0.5, 1.0, 1.5]
    await world.supervisor.stop()


async def test_an_instance_up_for_healthy_after_resets_the_backoff(make_world) -> None:
    world = await make_world(service(healthy_after=60.0, start_retries=10))

    async def die(code: int, after: float = 0.0) -> None:
        count = len(world.runs())
        world.clock.advance(after)
        world.process_of(world.supervisor.instances("web")[0]).finish(code)
        await eventually(lambda: len(world.runs()) == count + 1)
        await eventually(lambda: bool(world.supervisor.instances("web")))

    for _ in range(3):
        await die(1)
    await die(1, after=61.0)
    await die(1)
    await die(1)
    assert world.sleep.delays == [1, 2, 4, 1, 1, 2]


async def kill_instance(world: World, replica: int) -> None:
    """Make the slot's instance exit 1 and wait until it is replaced or given up."""
    dead = next(r for r in world.supervisor.instances("web") if r.replica_index == replica)
    world.process_of(dead).finish(1)

    def settled() -> bool:
        if replica in world.supervisor.given_up("web"):
            return True
        now = [r for r in world.supervisor.instances("web") if r.replica_index == replica]
        return bool(now) and now[0].id != dead.id and now[0].status is RunStatus.RUNNING

    await eventually(settled)


async def test_start_retries_fast_failures_in_a_row_leave_the_slot_empty(
    make_world, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world(service(instances=2, start_retries=3))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await kill_instance(world, 0)
    assert world.supervisor.given_up("web") == [0]
    slot0 = world.runs(replica=0)
    assert [(r.end_reason, r.exit_code) for r in slot0] == [(EndReason.FAILED, 1)] * 3
    assert [r.replica_index for r in world.supervisor.instances("web")] == [1]
    assert "web[0]" in caplog.text


async def test_an_instance_that_cannot_start_counts_as_a_fast_failure(make_world) -> None:
    world = World(service(start_retries=2))
    world.executor.refuse = "cannot start: shell /nope does not exist"
    await world.start()
    await eventually(lambda: world.supervisor.given_up("web") == [0])
    runs = world.runs()
    assert [(r.end_reason, r.exit_code) for r in runs] == [(EndReason.FAILED, -1)] * 2
    lines = await world.logs.read(runs[0].id, 0, 10)
    assert [line.text for line in lines] == ["runwarden: cannot start: shell /nope does not exist"]
    await world.supervisor.stop()


async def test_stop_records_every_instance_stopped_and_leaves_no_task(make_world) -> None:
    world = World(service(instances=2, stop_signal="SIGINT"))
    await world.start()
    world.sleep.hold = True
    world.process_of(world.supervisor.instances("web")[1]).finish(1)
    await eventually(lambda: world.sleep.delays == [1.0])
    await world.supervisor.stop()
    assert not await world.repo.active()
    runs = world.runs()
    assert [(r.replica_index, r.end_reason) for r in runs] == [
        (0, EndReason.STOPPED),
        (1, EndReason.FAILED),
    ]
    assert world.executor.started[0].signals == ["SIGINT"]
    assert world.supervisor.instances("web") == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_restart_replaces_every_instance_and_forgets_past_failures(make_world) -> None:
    world = await make_world(service(instances=2, start_retries=1))
    old = world.supervisor.instances("web")
    world.process_of(old[0]).finish(1)
    await eventually(lambda: world.supervisor.given_up("web") == [0])
    await world.supervisor.restart("web")
    new = world.supervisor.instances("web")
    assert [(r.replica_index, r.status) for r in new] == [
        (0, RunStatus.RUNNING),
        (1, RunStatus.RUNNING),
    ]
    assert {r.id for r in new}.isdisjoint(r.id for r in old)
    assert world.supervisor.given_up("web") == []
    stopped = await world.repo.get(old[1].id)
    assert stopped is not None
    assert stopped.end_reason is EndReason.STOPPED


async def test_a_stopped_service_stays_stopped_until_restarted(make_world) -> None:
    world = await make_world(service(instances=2))
    await world.supervisor.stop_service("web")
    assert world.supervisor.instances("web") == []
    assert {r.end_reason for r in world.runs()} == {EndReason.STOPPED}
    await asyncio.sleep(0.05)
    assert len(world.runs()) == 2
    await world.supervisor.restart("web")
    assert len(world.supervisor.instances("web")) == 2
    assert len(world.runs()) == 4


async def test_an_unknown_service_cannot_be_restarted_or_stopped(make_world) -> None:
    world = await make_world(service())
    with pytest.raises(TaskNotFound):
        await world.supervisor.restart("nope")
    with pytest.raises(TaskNotFound):
        await world.supervisor.stop_service("nope")


async def test_a_cancelled_slot_kills_its_instance_and_records_it_stopped(make_world) -> None:
    # What happens to slot tasks left behind when the event loop shuts down.
    world = await make_world(service())
    run = world.supervisor.instances("web")[0]
    (slot_task,) = [t for t in asyncio.all_tasks() if t.get_name() == "service web[0]"]
    slot_task.cancel()
    await asyncio.gather(slot_task, return_exceptions=True)
    stored = await world.repo.get(run.id)
    assert stored is not None
    assert stored.end_reason is EndReason.STOPPED
    assert world.process_of(run).signals == ["SIGTERM"]
    assert len(world.runs()) == 1


async def test_a_reload_scales_a_service_without_touching_the_instances_it_keeps(
    make_world,
) -> None:
    world = await make_world(service(instances=3))
    kept = world.supervisor.instances("web")[:2]
    await world.supervisor.reconfigure({"web": service(instances=2)})
    assert world.supervisor.instances("web") == kept
    surplus = world.runs(replica=2)
    assert [r.end_reason for r in surplus] == [EndReason.STOPPED]
    assert [s.index for s in await world.cluster.slots(["web"])] == [0, 1]
    await world.supervisor.reconfigure({"web": service(instances=4)})
    await eventually(lambda: len(world.supervisor.instances("web")) == 4)
    assert [r.replica_index for r in world.supervisor.instances("web")] == [0, 1, 2, 3]
    assert world.supervisor.instances("web")[:2] == kept


async def test_a_reload_that_changes_the_command_restarts_instances_one_at_a_time(
    make_world,
) -> None:
    world = await make_world(service(instances=2))
    old = world.supervisor.instances("web")
    started_when_stopped: dict[int, int] = {}
    for process in list(world.executor.started):
        stop = process.terminate

        async def counted(signal: str, grace: float, process=process, stop=stop) -> None:  # type: ignore[no-untyped-def]
            started_when_stopped[process.pid] = len(world.executor.started)
            await stop(signal, grace)

        process.terminate = counted  # type: ignore[method-assign]
    changed = dataclasses.replace(service(instances=2), run="serve --v2")
    await world.supervisor.reconfigure({"web": changed})
    new = world.supervisor.instances("web")
    assert {r.id for r in new}.isdisjoint(r.id for r in old)
    assert [p.spec.command for p in world.executor.started] == ["serve"] * 2 + ["serve --v2"] * 2
    # One at a time: the second old instance was stopped only after the first new one began.
    first, second = (world.process_of(r).pid for r in old)
    assert (started_when_stopped[first], started_when_stopped[second]) == (2, 3)


async def test_a_reload_that_removes_a_service_stops_it_and_frees_its_slots(make_world) -> None:
    world = await make_world(service(instances=2))
    await world.supervisor.reconfigure({})
    assert {r.end_reason for r in world.runs()} == {EndReason.STOPPED}
    assert await world.cluster.slots(["web"]) == []
