"""A node's membership: joining settles only dead daemons of this machine, the lease is
renewed or lost, and reaping waits after the node regained the store."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from adapters.memory import FakeClock, InMemoryExecutor, InMemoryRunRepository
from adapters.memory_cluster import InMemoryCluster
from app.runtime.membership import ClusterTiming, Membership, boot_id
from domain.cluster import FenceAction, Heartbeat, NodeInfo
from domain.errors import StoreUnavailable
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
JOB = TaskSpec(name="job", run="true")
TIMING = ClusterTiming(heartbeat=2.0, lease=6.0)


class FlakyCluster(InMemoryCluster):
    """The fake store, whose heartbeats fail while ``reachable`` is False."""

    reachable = True

    async def heartbeat(
        self, node_id: str, lease: float, config_hash: str | None = None
    ) -> Heartbeat | None:
        if not self.reachable:
            raise StoreUnavailable("cut off")
        return await super().heartbeat(node_id, lease, config_hash)


class World:
    def __init__(self, dead_pids: frozenset[int] = frozenset()) -> None:
        self.clock = FakeClock(T0)
        self.repo = InMemoryRunRepository()
        self.cluster = FlakyCluster(self.repo, self.clock)
        self.executor = InMemoryExecutor()
        self.dead_pids = dead_pids
        self._pids = iter(range(50_000, 60_000))

    def member(self) -> Membership:
        """A daemon of its own (its own pid) on this machine."""
        return Membership(
            self.cluster,
            self.clock,
            TIMING,
            self.executor,
            version="1",
            config_hash="h",
            alive=lambda pid: pid not in self.dead_pids,
            pid=next(self._pids),
        )

    async def two_nodes(self) -> tuple[Membership, Membership]:
        """Two live daemons of this machine, joined in turn (the first sees the second at
        its next renewal)."""
        first, second = self.member(), self.member()
        await first.join({})
        await second.join({})
        return first, second

    async def node_running(self, node: NodeInfo, run_id: str) -> Run:
        await self.cluster.register(node)
        run = Run(run_id, "job", T0, TriggeredBy.API, node_id=node.id)
        await self.repo.add(run)
        claimed = await self.repo.claim(run, T0, 5)
        assert claimed is not None
        return claimed


def other(node_id: str, pid: int, host: str | None = None) -> NodeInfo:
    return NodeInfo(node_id, host or os.uname().nodename, pid, boot_id(), "1", "h")


async def test_joining_settles_a_dead_daemon_of_this_machine_at_once_and_kills_its_orphans() -> (
    None
):
    world = World(dead_pids=frozenset({4242}))
    dead = await world.node_running(other("0000-dead", 4242), "01RUNOFDEAD00000000000000A")
    live = await world.node_running(other("0000-live", 4343), "01RUNOFLIVE00000000000000A")
    remote = await world.node_running(other("0000-far", 4242, host="elsewhere"), "01FAR0000000")
    member = world.member()
    reaped = await member.join({"job": JOB})
    assert reaped.nodes == ("0000-dead",)
    assert world.executor.reaped == [dead.id]
    statuses = {r.id: r.status for r in world.repo.runs.values()}
    assert statuses[dead.id] is RunStatus.ENDED
    assert statuses[live.id] is RunStatus.RUNNING
    assert statuses[remote.id] is RunStatus.RUNNING  # another machine: wait for its lease
    assert member.peers == 2
    stored = world.repo.runs[dead.id]
    assert (stored.end_reason, stored.exit_code) == (EndReason.CRASHED, -2)


async def test_a_renewal_keeps_the_node_and_a_reaped_node_fences() -> None:
    world = World()
    member = world.member()
    await member.join({})
    assert await member.renew() is FenceAction.KEEP
    survivor = world.member()
    await survivor.join({})
    world.clock.advance(TIMING.lease + 1)
    await world.cluster.heartbeat(survivor.node_id, TIMING.lease)
    await survivor.reap({})
    assert await member.renew() is FenceAction.FENCE


async def test_cut_off_with_live_peers_a_node_fences_before_its_lease_can_run_out() -> None:
    world = World()
    member, _peer = await world.two_nodes()
    assert await member.renew() is FenceAction.KEEP
    assert member.peers == 1
    world.cluster.reachable = False
    world.clock.advance(TIMING.lease - 2)
    assert await member.renew() is FenceAction.KEEP
    world.clock.advance(1)
    assert await member.renew() is FenceAction.FENCE


async def test_alone_a_node_keeps_its_processes_through_an_outage() -> None:
    world = World()
    member = world.member()
    await member.join({})
    world.cluster.reachable = False
    world.clock.advance(600)
    assert await member.renew() is FenceAction.KEEP


async def test_back_after_an_outage_a_node_waits_a_lease_before_reaping() -> None:
    world = World()
    member, peer = await world.two_nodes()
    await member.renew()
    # The peer went quiet (in truth: the store did), and we were away for a while.
    world.clock.advance(TIMING.lease + 1)
    member.peers = 0  # as if we had been alone: no fencing, just the late renewal
    assert await member.renew() is FenceAction.KEEP
    assert (await member.reap({})).nodes == ()
    world.clock.advance(TIMING.lease)
    assert (await member.reap({})).nodes == (peer.node_id,)


async def test_a_late_node_nobody_reaped_keeps_its_lease_with_one_last_renewal() -> None:
    # A slow start or a long pause: the trust in the lease is spent, but the store says the
    # node is still up, so nothing was taken over and nothing needs stopping.
    world = World()
    member, _peer = await world.two_nodes()
    await member.renew()
    world.clock.advance(TIMING.lease + 5)
    assert member.trust_left() < 0
    assert await member.renew() is FenceAction.KEEP
    assert member.trust_left() > 0
