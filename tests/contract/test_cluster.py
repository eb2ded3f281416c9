"""The cluster ports (``ClusterStore``, ``SlotLedger``) on the in-memory fake and PostgreSQL.

Leases are judged on the store's clock: on PostgreSQL a test expires a node by moving its
``heartbeat_at`` back, on the fake by moving the fake clock (the fake's "database clock").
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.memory import FakeClock, InMemoryRunRepository
from adapters.memory_cluster import InMemoryCluster
from adapters.memory_notify import InMemoryOutbox
from adapters.postgres.cluster import PostgresCluster
from adapters.postgres.database import async_url
from adapters.postgres.notifications import PostgresOutbox
from adapters.postgres.runs import PostgresRunRepository
from adapters.postgres.slots import PostgresSlots
from domain import services
from domain.cluster import NodeInfo, NodeState
from domain.notifications import ChannelRoute, Routing
from domain.outbox import DeliveryQuery
from domain.ports import ClusterStore, NotificationOutbox, RunRepository, SlotLedger, SlotState
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskKind, TaskSpec
from tests.contract.conftest import CROWD, new_id

LEASE = 6.0
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
JOB = TaskSpec(name="job", run="true", retry_attempts=1)
WEB = TaskSpec(name="web", run="serve", kind=TaskKind.SERVICE, instances=3)
TASKS = {JOB.name: JOB, WEB.name: WEB}


@dataclass
class Cluster:
    """One implementation's stores, and a way to let a node's lease run out."""

    runs: RunRepository
    nodes: ClusterStore
    slots: SlotLedger
    expire: Callable[[str], Awaitable[None]]
    outbox: NotificationOutbox | None = None

    async def join(self, host: str = "h1", pid: int = 1) -> str:
        node = NodeInfo(str(uuid.uuid4()), host, pid, "boot", "1", "hash")
        await self.nodes.register(node)
        return node.id

    async def running(self, node: str, task: TaskSpec = JOB) -> Run:
        run = Run(new_id(T0), task.name, T0, TriggeredBy.API, node_id=node)
        await self.runs.add(run)
        claimed = await self.runs.claim(run, T0, 10)
        assert claimed is not None
        return claimed

    async def pending(self, node: str | None, task: TaskSpec = JOB) -> Run:
        run = Run(new_id(T0), task.name, T0, TriggeredBy.API, node_id=node)
        await self.runs.add(run)
        return run


@pytest.fixture(params=["memory", "postgres"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Each implementation, empty; on PostgreSQL with connections for racing callers."""
    if request.param == "memory":
        clock = FakeClock(T0)
        repo = InMemoryRunRepository()
        fake = InMemoryCluster(repo, clock)

        async def expire_fake(node_id: str) -> None:
            # Everyone else renews; this one does not.
            clock.advance(LEASE + 1)
            for other in fake.nodes_by_id.values():
                if other.info.id != node_id:
                    other.heartbeat_at = clock.now()

        yield Cluster(repo, fake, fake, expire_fake, InMemoryOutbox(repo, clock))
        return
    url = request.getfixturevalue("database_url")
    engine = create_async_engine(async_url(url), pool_size=CROWD, max_overflow=0)

    async def expire_row(node_id: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE nodes SET heartbeat_at = now() - interval '1 minute' WHERE id = :id"
                ),
                {"id": node_id},
            )

    try:
        yield Cluster(
            PostgresRunRepository(engine),
            PostgresCluster(engine),
            PostgresSlots(engine),
            expire_row,
            PostgresOutbox(engine),
        )
    finally:
        await engine.dispose()


async def test_a_run_reaped_as_crashed_is_notified(cluster: Cluster) -> None:
    assert cluster.outbox is not None
    await cluster.outbox.configure(Routing(channels=(ChannelRoute("ops"),)))
    dead, me = await cluster.join(), await cluster.join()
    crashed = await cluster.running(dead)
    await cluster.expire(dead)
    await cluster.nodes.reap(me, LEASE, TASKS)
    page = await cluster.outbox.list(DeliveryQuery(run_id=crashed.id))
    assert [(d.type, d.channel, d.data["exit_code"]) for d in page.deliveries] == [
        ("run.crashed", "ops", -2)
    ]


async def test_a_heartbeat_counts_the_other_live_nodes_and_their_configs(cluster: Cluster) -> None:
    a = await cluster.join()
    await cluster.join()
    beat = await cluster.nodes.heartbeat(a, LEASE)
    assert beat is not None
    assert (beat.peers, beat.config_hashes) == (1, frozenset({"hash"}))
    assert await cluster.nodes.heartbeat(str(uuid.uuid4()), LEASE) is None


async def test_reaping_settles_an_expired_node_and_leaves_live_ones_alone(cluster: Cluster) -> None:
    dead, live = await cluster.join(), await cluster.join()
    crashed = await cluster.running(dead)
    kept = await cluster.running(live)
    queued = await cluster.pending(dead)
    instance = await cluster.pending(dead, WEB)
    await cluster.expire(dead)
    reaped = await cluster.nodes.reap(live, LEASE, TASKS)
    assert reaped.nodes == (dead,)
    assert [r.id for r in reaped.crashed] == [crashed.id]
    stored = await cluster.runs.get(crashed.id)
    assert stored is not None
    assert (stored.end_reason, stored.exit_code) == (EndReason.CRASHED, -2)
    (retry,) = reaped.retries
    assert (retry.retry_of_run_id, retry.node_id, retry.status) == (
        crashed.id,
        None,
        RunStatus.PENDING,
    )
    assert (await cluster.runs.get(kept.id)) == kept
    released = await cluster.runs.get(queued.id)
    assert released is not None
    assert (released.status, released.node_id) == (RunStatus.PENDING, None)
    skipped = await cluster.runs.get(instance.id)
    assert skipped is not None
    assert skipped.end_reason is EndReason.SKIPPED
    assert await cluster.nodes.heartbeat(dead, LEASE) is None
    statuses = {n.info.id: (n.state, n.alive) for n in await cluster.nodes.nodes(LEASE)}
    assert statuses == {dead: (NodeState.DEAD, False), live: (NodeState.UP, True)}


async def test_a_run_asked_to_stop_is_not_retried_when_its_node_dies(cluster: Cluster) -> None:
    dead, live = await cluster.join(), await cluster.join()
    run = await cluster.running(dead)
    assert await cluster.nodes.request_stop(run.id) is not None
    await cluster.expire(dead)
    reaped = await cluster.nodes.reap(live, LEASE, TASKS)
    assert [r.id for r in reaped.crashed] == [run.id]
    assert reaped.retries == ()


async def test_racing_reapers_settle_each_run_once(cluster: Cluster) -> None:
    dead = await cluster.join()
    reapers = [await cluster.join() for _ in range(5)]
    runs = [await cluster.running(dead) for _ in range(8)]
    await cluster.expire(dead)
    results = await asyncio.gather(*(cluster.nodes.reap(r, LEASE, TASKS) for r in reapers))
    assert sorted(n for result in results for n in result.nodes) == [dead]
    crashed = [r.id for result in results for r in result.crashed]
    assert sorted(crashed) == sorted(r.id for r in runs)
    retries = [r.retry_of_run_id for result in results for r in result.retries]
    assert sorted(retries) == sorted(crashed)  # type: ignore[type-var]
    stored = await cluster.runs.active()
    assert sorted(r.retry_of_run_id for r in stored) == sorted(crashed)  # type: ignore[type-var]


async def test_a_previous_incarnation_is_settled_at_once_without_waiting_for_its_lease(
    cluster: Cluster,
) -> None:
    old = await cluster.join()
    run = await cluster.running(old)
    new = await cluster.join()
    assert (await cluster.nodes.reap(new, LEASE, TASKS)).crashed == ()
    assert [r.id for r in await cluster.nodes.running_runs_of([old])] == [run.id]
    reaped = await cluster.nodes.reap(new, LEASE, TASKS, forced=[old])
    assert (reaped.nodes, [r.id for r in reaped.crashed]) == ((old,), [run.id])


async def test_only_the_node_running_a_run_records_its_end(cluster: Cluster) -> None:
    owner, other = await cluster.join(), await cluster.join()
    run = await cluster.running(owner)
    assert run.node_id == owner
    foreign = dataclasses.replace(run, node_id=other)
    assert await services.end_run(cluster.runs, foreign, EndReason.STOPPED, T0) is None
    assert await services.end_run(cluster.runs, run, EndReason.SUCCESS, T0, 0) is not None


async def test_a_reaped_node_can_neither_end_nor_start_runs(cluster: Cluster) -> None:
    zombie, survivor = await cluster.join(), await cluster.join()
    run = await cluster.running(zombie)
    queued = await cluster.pending(zombie)
    await cluster.expire(zombie)
    await cluster.nodes.reap(survivor, LEASE, TASKS)
    # Its late end is fenced: the survivor recorded it crashed, and that stays.
    assert await services.end_run(cluster.runs, run, EndReason.SUCCESS, T0, 0) is None
    stored = await cluster.runs.get(run.id)
    assert stored is not None
    assert stored.end_reason is EndReason.CRASHED
    # It can no longer take a slot, nor start a cron tick at once.
    assert await cluster.runs.claim(queued, T0, 10) is None
    tick = Run(new_id(T0), "job", T0, TriggeredBy.CRON, node_id=zombie)
    admitted = await cluster.runs.admit(tick, JOB, start_at=T0)
    assert admitted.run.status is RunStatus.PENDING


async def test_racing_adopters_never_share_a_pending_run(cluster: Cluster) -> None:
    adopters = [await cluster.join() for _ in range(4)]
    orphans = [await cluster.pending(None) for _ in range(12)]
    await cluster.pending(None, TaskSpec(name="unknown", run="x"))
    taken = await asyncio.gather(*(cluster.nodes.adopt(a, ["job"], 5) for a in adopters))
    ids = [r.id for batch in taken for r in batch]
    assert sorted(ids) == sorted(r.id for r in orphans)
    for adopter, batch in zip(adopters, taken, strict=True):
        assert all(r.node_id == adopter for r in batch)


async def test_leaving_releases_pending_runs_and_slots_at_once(cluster: Cluster) -> None:
    leaver, stayer = await cluster.join(), await cluster.join()
    queued = await cluster.pending(leaver)
    await cluster.slots.sync({"web": 3})
    assert len(await cluster.slots.claim(leaver, "web", 3)) == 3
    await cluster.nodes.leave(leaver)
    released = await cluster.runs.get(queued.id)
    assert released is not None
    assert released.node_id is None
    assert [s.index for s in await cluster.slots.claim(stayer, "web", 3)] == [0, 1, 2]
    assert [n.info.id for n in await cluster.nodes.nodes(LEASE)] == [stayer]


async def test_racing_claimers_get_disjoint_slots(cluster: Cluster) -> None:
    claimers = [await cluster.join() for _ in range(5)]
    await cluster.slots.sync({"web": 3})
    got = await asyncio.gather(*(cluster.slots.claim(c, "web", 2) for c in claimers))
    indexes = [s.index for batch in got for s in batch]
    assert sorted(indexes) == [0, 1, 2]


async def test_an_instance_is_recorded_only_in_a_slot_its_node_holds(cluster: Cluster) -> None:
    holder, other = await cluster.join(), await cluster.join()
    await cluster.slots.sync({"web": 2})
    await cluster.slots.claim(holder, "web", 1)

    def instance(node: str, index: int) -> Run:
        return Run(new_id(T0), "web", T0, TriggeredBy.API, replica_index=index, node_id=node)

    assert await cluster.slots.record_instance(instance(holder, 0))
    assert not await cluster.slots.record_instance(instance(other, 0))
    assert not await cluster.slots.record_instance(instance(holder, 1))


async def test_a_dead_nodes_slots_are_freed_for_the_survivors(cluster: Cluster) -> None:
    dead, live = await cluster.join(), await cluster.join()
    await cluster.slots.sync({"web": 2})
    await cluster.slots.claim(dead, "web", 2)
    assert await cluster.slots.claim(live, "web", 2) == []
    await cluster.expire(dead)
    assert (await cluster.nodes.reap(live, LEASE, TASKS)).freed_slots == 2
    assert [s.index for s in await cluster.slots.claim(live, "web", 2)] == [0, 1]


async def test_commands_are_acknowledged_by_holders_and_at_once_for_free_slots(
    cluster: Cluster,
) -> None:
    holder = await cluster.join()
    await cluster.slots.sync({"web": 2})
    await cluster.slots.claim(holder, "web", 1)
    generation = await cluster.slots.command("web", stop=True)
    assert not await cluster.slots.settled("web", generation)
    rows = await cluster.slots.slots(["web"])
    assert {s.state for s in rows} == {SlotState.STOPPED}
    assert await cluster.slots.settle(holder, "web", 0, generation=generation, release=True)
    assert await cluster.slots.settled("web", generation)
    assert await cluster.slots.claim(holder, "web", 2) == []  # stopped slots are not claimed
    restart = await cluster.slots.command("web", stop=False)
    assert await cluster.slots.settled("web", restart)
    assert len(await cluster.slots.claim(holder, "web", 2)) == 2


async def test_slots_beyond_the_instances_go_once_nobody_holds_them(cluster: Cluster) -> None:
    holder = await cluster.join()
    await cluster.slots.sync({"web": 3})
    await cluster.slots.claim(holder, "web", 3)
    await cluster.slots.settle(holder, "web", 1, generation=0, release=True)
    await cluster.slots.sync({"web": 1})
    assert [s.index for s in await cluster.slots.slots(["web"])] == [0, 2]


async def test_one_node_at_a_time_leads_a_duty_until_its_lease_lapses(cluster: Cluster) -> None:
    a, b = await cluster.join(), await cluster.join()
    assert await cluster.nodes.try_lead("retention", a, 60)
    assert not await cluster.nodes.try_lead("retention", b, 60)
    assert await cluster.nodes.try_lead("retention", a, 60)
