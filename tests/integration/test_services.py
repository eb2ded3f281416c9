"""The service supervisor with real processes and PostgreSQL.

Only processes this test started are signalled: each pid is checked to be a child of this
test process first. ``asyncio.timeout`` guards turn a hang into a failure; they assert no
durations.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable

import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SystemClock
from adapters.executor import SubprocessExecutor
from adapters.postgres.cluster import PostgresCluster
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.runs import PostgresRunRepository
from adapters.postgres.slots import PostgresSlots
from app.runtime.supervisor import ServiceSupervisor
from domain.cluster import NodeInfo
from domain.listing import RunQuery
from domain.run import EndReason, Run, RunStatus
from domain.tasks import TaskKind, TaskSpec

GUARD = 20.0  # seconds before a stuck test fails instead of hanging


def service(name: str, run: str, **options: object) -> TaskSpec:
    return TaskSpec(name=name, run=run, kind=TaskKind.SERVICE, **options)  # type: ignore[arg-type]


@pytest.fixture
def repo(engine: AsyncEngine) -> PostgresRunRepository:
    return PostgresRunRepository(engine)


@pytest.fixture
async def make_supervisor(
    engine: AsyncEngine, repo: PostgresRunRepository
) -> AsyncIterator[Callable[..., ServiceSupervisor]]:
    """Supervisors stopped after the test, so no process outlives it even on failure.

    Each runs as the only node of a cluster on the test's database."""
    made: list[ServiceSupervisor] = []
    node = NodeInfo(str(uuid.uuid4()), "host", os.getpid(), "boot", "test", "hash")
    cluster = PostgresCluster(engine)
    await cluster.register(node)

    def make(*specs: TaskSpec) -> ServiceSupervisor:
        made.append(
            ServiceSupervisor(
                repo,
                PostgresLogStore(engine),
                SubprocessExecutor(drain_timeout=0.2),
                SystemClock(),
                {s.name: s for s in specs},
                PostgresSlots(engine),
                node=lambda: node.id,
            )
        )
        return made[-1]

    yield make
    for supervisor in made:
        await supervisor.stop()


async def all_runs(repo: PostgresRunRepository, task_name: str) -> list[Run]:
    # A listing shows runs without their pid: read each whole.
    page = await repo.list(RunQuery(task_name=task_name, limit=100))
    runs = [await repo.get(listed.id) for listed in page.runs]
    return sorted((r for r in runs if r is not None), key=lambda r: r.id)


async def wait_until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def kill_group_from_outside(run: Run) -> None:
    assert run.pid is not None
    # Never signal a process this test did not start.
    assert psutil.Process(run.pid).ppid() == os.getpid()
    os.killpg(run.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_killed_instances_are_replaced_in_their_slots_and_stop_ends_them_all(
    make_supervisor, repo: PostgresRunRepository
) -> None:
    supervisor = make_supervisor(
        service("sleepers", "sleep 300", instances=3, restart_delay=0.2, graceful_stop=2.0)
    )
    await supervisor.start()
    first = supervisor.instances("sleepers")
    assert [r.replica_index for r in first] == [0, 1, 2]

    for run in first:
        kill_group_from_outside(run)

    def replaced() -> bool:
        now = supervisor.instances("sleepers")
        # New runs are recorded pending first: wait until each has its process.
        return (
            len(now) == 3
            and {r.id for r in now}.isdisjoint(r.id for r in first)
            and all(r.status is RunStatus.RUNNING for r in now)
        )

    await wait_until(replaced)
    second = supervisor.instances("sleepers")
    assert [r.replica_index for r in second] == [0, 1, 2]
    assert all(r.status is RunStatus.RUNNING for r in second)
    for run in first:
        ended = await repo.get(run.id)
        assert ended is not None
        assert (ended.end_reason, ended.exit_code) == (EndReason.FAILED, -1)

    await supervisor.stop()
    runs = await all_runs(repo, "sleepers")
    assert len(runs) == 6
    assert all(r.status is RunStatus.ENDED for r in runs)
    assert not [r.pid for r in runs if r.pid is not None and alive(r.pid)]
    by_id = {r.id: r for r in runs}
    assert {by_id[r.id].end_reason for r in second} == {EndReason.STOPPED}


async def test_a_service_that_keeps_failing_fast_is_given_up_after_start_retries(
    make_supervisor, repo: PostgresRunRepository
) -> None:
    supervisor = make_supervisor(
        service("crashy", "echo starting; exit 1", restart_delay=0.05, start_retries=3)
    )
    await supervisor.start()
    await wait_until(lambda: supervisor.given_up("crashy") == [0])
    runs = await all_runs(repo, "crashy")
    assert [(r.replica_index, r.end_reason, r.exit_code) for r in runs] == [
        (0, EndReason.FAILED, 1)
    ] * 3
    assert supervisor.instances("crashy") == []
