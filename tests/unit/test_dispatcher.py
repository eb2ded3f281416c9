"""The dispatcher's queueing, stopping and timeouts, with a scripted fake executor."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from adapters.clock import SystemClock
from adapters.memory import InMemoryExecutor, InMemoryLogStore, InMemoryRunRepository
from app.runtime.dispatcher import Dispatcher
from domain import services
from domain.logs import LogStream
from domain.run import EndReason, Run, RunStatus
from domain.tasks import TaskSpec


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def eventually(check) -> None:  # type: ignore[no-untyped-def]
    """Poll ``check`` until it holds; the state lives in fakes, so there is no event."""
    async with asyncio.timeout(5):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class World:
    def __init__(self, *tasks: TaskSpec) -> None:
        self.repo = InMemoryRunRepository()
        self.logs = InMemoryLogStore()
        self.clock = SystemClock()
        self.executor = InMemoryExecutor()
        self.tasks = {t.name: t for t in tasks}
        self.dispatcher = Dispatcher(self.repo, self.logs, self.executor, self.clock, self.tasks)

    async def trigger(self, name: str) -> Run:
        admitted, _ = await services.trigger_run(self.repo, self.clock, self.tasks[name])
        self.dispatcher.submit(admitted.run)
        await settle()
        return admitted.run

    async def status(self, run: Run) -> RunStatus:
        stored = await self.repo.get(run.id)
        assert stored is not None
        return stored.status

    async def stored(self, run: Run) -> Run:
        stored = await self.repo.get(run.id)
        assert stored is not None
        return stored


async def test_runs_of_a_task_queue_in_order_up_to_max_concurrent(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work", max_concurrent=2))
    runs = [await world.trigger("t") for _ in range(4)]
    assert [await world.status(r) for r in runs] == [
        RunStatus.RUNNING,
        RunStatus.RUNNING,
        RunStatus.PENDING,
        RunStatus.PENDING,
    ]
    world.executor.started[0].finish(0)
    await eventually(lambda: _is(world, runs[2], RunStatus.RUNNING))
    assert await world.status(runs[3]) is RunStatus.PENDING
    assert (await world.stored(runs[0])).end_reason is EndReason.SUCCESS


@pytest.fixture
async def make_world():  # type: ignore[no-untyped-def]
    """Worlds shut down after the test, so no process or task outlives it."""
    made: list[World] = []

    def make(*tasks: TaskSpec) -> World:
        made.append(World(*tasks))
        return made[-1]

    yield make
    for world in made:
        await world.dispatcher.shutdown()


async def _is(world: World, run: Run, status: RunStatus) -> bool:
    return await world.status(run) is status


async def test_the_process_gets_the_command_and_run_identity(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="echo hi", env={"A": "1"}, working_dir="/tmp"))
    run = await world.trigger("t")
    process = world.executor.started[0]
    spec = process.spec
    assert (spec.command, spec.working_dir, spec.env["A"]) == ("echo hi", "/tmp", "1")
    assert spec.env["RUNWARDEN_RUN_ID"] == run.id


async def test_output_is_stored_as_numbered_lines(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x"))
    run = await world.trigger("t")
    process = world.executor.started[0]
    await process.sink.write(LogStream.STDOUT, b"one\ntwo")
    await process.sink.write(LogStream.STDERR, b"err\n")
    process.finish(0)
    await eventually(lambda: _is(world, run, RunStatus.ENDED))
    lines = await world.logs.read(run.id, 0, 10)
    assert [(line.n, line.stream, line.text) for line in lines] == [
        (0, LogStream.STDOUT, "one"),
        (1, LogStream.STDERR, "err"),
        (2, LogStream.STDOUT, "two"),
    ]


async def test_a_nonzero_exit_fails_unless_it_is_a_success_code(make_world) -> None:
    world = make_world(
        TaskSpec(name="t", run="x"), TaskSpec(name="u", run="x", exit_codes=frozenset({3}))
    )
    failed, allowed = await world.trigger("t"), await world.trigger("u")
    for process in world.executor.started:
        process.finish(3)
    await eventually(lambda: _is(world, allowed, RunStatus.ENDED))
    await eventually(lambda: _is(world, failed, RunStatus.ENDED))
    assert ((await world.stored(failed)).end_reason, (await world.stored(failed)).exit_code) == (
        EndReason.FAILED,
        3,
    )
    assert (await world.stored(allowed)).end_reason is EndReason.SUCCESS


async def test_stopping_a_queued_run_ends_it_without_a_process(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x"))
    first, queued = await world.trigger("t"), await world.trigger("t")
    await world.dispatcher.stop(queued)
    stored = await world.stored(queued)
    assert (stored.end_reason, stored.exit_code, stored.start_at) == (EndReason.STOPPED, -1, None)
    assert len(world.executor.started) == 1
    assert await world.status(first) is RunStatus.RUNNING


async def test_stopping_a_running_run_signals_it_and_records_stopped(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x", stop_signal="SIGINT"))
    run = await world.trigger("t")
    await world.dispatcher.stop(run)
    assert world.executor.started[0].signals == ["SIGINT"]
    assert (await world.stored(run)).end_reason is EndReason.STOPPED


async def test_a_run_past_its_timeout_is_terminated_and_ends_timeout(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x", timeout=0.05))
    run = await world.trigger("t")
    await eventually(lambda: _is(world, run, RunStatus.ENDED))
    stored = await world.stored(run)
    assert (stored.end_reason, stored.exit_code) == (EndReason.TIMEOUT, -1)
    system = [line.text for line in await world.logs.read(run.id, 0, 10)]
    assert any("timeout" in text for text in system)


async def test_a_process_that_cannot_start_fails_with_a_system_line(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x"))
    world.executor.refuse = "cannot start: working directory /nope does not exist"
    run = await world.trigger("t")
    await eventually(lambda: _is(world, run, RunStatus.ENDED))
    stored = await world.stored(run)
    assert (stored.end_reason, stored.exit_code) == (EndReason.FAILED, -1)
    (line,) = await world.logs.read(run.id, 0, 10)
    assert (line.stream, "/nope" in line.text) == (LogStream.SYSTEM, True)


async def test_shutdown_stops_running_runs_and_leaves_queued_ones_pending(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="x"))
    running, queued = await world.trigger("t"), await world.trigger("t")
    await world.dispatcher.shutdown()
    assert (await world.stored(running)).end_reason is EndReason.STOPPED
    assert await world.status(queued) is RunStatus.PENDING
    world.dispatcher.submit(queued)
    await settle()
    assert len(world.executor.started) == 1, "nothing starts once shutting down"


@pytest.mark.parametrize("count", [1, 5])
async def test_every_submitted_run_ends_exactly_once(make_world, count: int) -> None:
    world = make_world(TaskSpec(name="t", run="x", max_concurrent=count))
    runs = [await world.trigger("t") for _ in range(count)]
    for process in world.executor.started:
        process.finish(0)
    for run in runs:
        await eventually(lambda r=run: _is(world, r, RunStatus.ENDED))
    assert await world.repo.active() == []


async def test_a_short_run_gets_its_pid_with_its_end(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work"))
    run = await world.trigger("t")
    process = world.executor.started[0]
    assert (await world.stored(run)).pid is None, "not written on its own before the delay"
    process.finish(0)
    await eventually(lambda: _is(world, run, RunStatus.ENDED))
    assert (await world.stored(run)).pid == process.pid


async def test_a_longer_run_gets_its_pid_written_while_it_runs(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work"))
    run = await world.trigger("t")
    process = world.executor.started[0]

    async def pid_written() -> bool:
        return (await world.stored(run)).pid == process.pid

    await eventually(pid_written)
    assert await world.status(run) is RunStatus.RUNNING
    process.finish(0)


async def test_a_run_of_another_node_is_stopped_through_its_owner(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work"))
    asked: list[str] = []

    async def stop_elsewhere(run: Run) -> None:
        asked.append(run.id)

    world.dispatcher = Dispatcher(
        world.repo, world.logs, world.executor, world.clock, world.tasks,
        node=lambda: "node-a", stop_elsewhere=stop_elsewhere,
    )  # fmt: skip
    admitted, _ = await services.trigger_run(world.repo, world.clock, world.tasks["t"])
    elsewhere = admitted.run  # recorded, but queued by no dispatcher of this node
    await world.dispatcher.stop(elsewhere)
    assert asked == [elsewhere.id]
    assert await world.status(elsewhere) is RunStatus.PENDING  # not settled behind its back


async def test_a_claim_records_this_node_as_the_owner(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work"))
    world.dispatcher = Dispatcher(
        world.repo, world.logs, world.executor, world.clock, world.tasks, node=lambda: "node-a"
    )
    run = await world.trigger("t")
    stored = await world.stored(run)
    assert (stored.status, stored.node_id) == (RunStatus.RUNNING, "node-a")
    assert world.executor.started[0].spec.env["RUNWARDEN_NODE_ID"] == "node-a"


async def test_an_abandoned_run_is_killed_and_nothing_is_recorded(make_world) -> None:
    world = make_world(TaskSpec(name="t", run="work", max_concurrent=1))
    running = await world.trigger("t")
    queued = await world.trigger("t")
    await world.dispatcher.abandon()
    await settle()
    assert world.executor.started[0].signals == ["SIGKILL"]
    # The survivor that reaped this node records these runs; this node writes nothing.
    assert await world.status(running) is RunStatus.RUNNING
    assert await world.status(queued) is RunStatus.PENDING
    assert world.dispatcher.queued_count() == 0
    assert len(world.executor.started) == 1


async def test_a_run_whose_slot_another_node_holds_waits_until_a_run_of_its_task_ends(
    make_world,
) -> None:
    world = make_world(TaskSpec(name="t", run="work", max_concurrent=1))

    def node(name: str) -> Dispatcher:
        return Dispatcher(
            world.repo, world.logs, world.executor, world.clock, world.tasks, node=lambda: name
        )

    a, b = node("node-a"), node("node-b")
    claims = 0
    claim = world.repo.claim

    async def counted(run: Run, at: datetime, max_concurrent: int) -> Run | None:
        nonlocal claims
        claims += 1
        return await claim(run, at, max_concurrent)

    world.repo.claim = counted  # type: ignore[method-assign]
    first, _ = await services.trigger_run(world.repo, world.clock, world.tasks["t"])
    a.submit(first.run)
    await settle()
    queued = [
        (await services.trigger_run(world.repo, world.clock, world.tasks["t"]))[0].run
        for _ in range(3)
    ]
    for run in queued:
        b.submit(run)
    await settle()
    # One claim found the slot taken; the others wait behind it without asking again.
    assert (b.waiting_for_slots, b.queued_count("t")) == (True, 3)
    assert claims == 2
    world.executor.started[0].finish(0)
    await eventually(lambda: _is(world, first.run, RunStatus.ENDED))
    b.slot_freed("t")
    await eventually(lambda: _is(world, queued[0], RunStatus.RUNNING))
    assert [await world.status(r) for r in queued[1:]] == [RunStatus.PENDING] * 2
    await a.shutdown()
    await b.shutdown()
