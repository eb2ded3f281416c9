"""This daemon as a node of the cluster: its id, its lease, and the reaping every node does.

A node joins with a fresh id, settles earlier incarnations of daemons on this machine at
once (their pid is gone: nothing runs their processes any more), and then, every second,
reaps nodes whose lease expired. Its heartbeat runs on a task of its own with a timeout,
so a database that hangs cannot starve it; ``renew`` returns what ``domain.cluster``
decides: carry on, or fence (stop everything, rejoin with a new id).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.runtime.resilience import durably
from domain.cluster import (
    DEFAULT_HEARTBEAT,
    DEFAULT_LEASE,
    FenceAction,
    NodeInfo,
    NodeState,
    config_drift,
    fence_decision,
    is_previous_incarnation,
)
from domain.errors import StoreUnavailable
from domain.ports import Clock, ClusterStore, Executor, Reaped
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class ClusterTiming:
    """``[cluster]``: how often a node renews its lease and how long the lease lasts."""

    heartbeat: float = DEFAULT_HEARTBEAT
    lease: float = DEFAULT_LEASE
    poll: float = 1.0
    """Seconds between reaping passes, adoptions, stop-request and slot checks."""


def boot_id() -> str:
    """This machine's boot id: pids are comparable only between daemons of one boot."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


def pid_alive(pid: int) -> bool:
    """Whether a process with that pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Membership:
    """Joins the cluster, renews this node's lease, and reaps dead nodes."""

    def __init__(
        self,
        store: ClusterStore,
        clock: Clock,
        timing: ClusterTiming,
        executor: Executor,
        *,
        version: str,
        config_hash: str,
        alive: Callable[[int], bool] = pid_alive,
        pid: int | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.timing = timing
        self._executor = executor
        self._version = version
        self._config_hash = config_hash
        self._pid_alive = alive
        self._pid = os.getpid() if pid is None else pid
        self.node_id = ""
        self.peers = 0
        """Other live nodes at the last renewal."""
        self._last_renewal = 0.0
        self._reap_after = 0.0
        self._drift_seen: frozenset[str] = frozenset()

    @property
    def live_nodes(self) -> int:
        """Live nodes, this one included, as of the last renewal."""
        return self.peers + 1

    def _describe(self, node_id: str) -> NodeInfo:
        return NodeInfo(
            id=node_id,
            host=socket.gethostname(),
            pid=self._pid,
            boot_id=boot_id(),
            version=self._version,
            config_hash=self._config_hash,
        )

    async def join(self, tasks: Mapping[str, TaskSpec]) -> Reaped:
        """Register as a new node; settle dead daemons of this machine and expired nodes.

        Processes of the settled daemons (matched by node id and run id) are killed before
        their runs are recorded ``crashed``, so a retry never runs beside its orphan.
        """
        me = self._describe(str(uuid.uuid4()))
        started = self._clock.monotonic()
        await durably(lambda: self._store.register(me), what="joining the cluster")
        self.node_id = me.id
        self._last_renewal = started
        self._reap_after = 0.0
        nodes = await durably(lambda: self._store.nodes(self.timing.lease), what="reading nodes")
        forced = [
            n.info.id
            for n in nodes
            if n.state is NodeState.UP and is_previous_incarnation(n.info, me, self._pid_alive)
        ]
        self.peers = sum(1 for n in nodes if n.alive and n.info.id not in (me.id, *forced))
        victims = await durably(
            lambda: self._store.running_runs_of(forced), what="reading runs of dead daemons"
        )
        if victims:
            killed = await self._executor.reap_orphans([r.id for r in victims], forced)
            if killed:
                log.warning("killed %d processes left by a daemon that died", killed)
        reaped = await durably(
            lambda: self._store.reap(me.id, self.timing.lease, tasks, forced, settle_unowned=True),
            what="settling dead daemons",
        )
        log.info("node %s joined the cluster (%d other live nodes)", me.id, self.peers)
        self._report(reaped)
        return reaped

    async def renew(self) -> FenceAction:
        """Renew the lease once (bounded by the heartbeat period); what to do next."""
        sent = self._clock.monotonic()
        since = sent - self._last_renewal
        if self.peers and since >= self.timing.lease - 1.0:
            # Frozen or cut off while others were alive: they may already have reaped us.
            return FenceAction.FENCE
        reached = True
        renewed = None
        try:
            async with asyncio.timeout(max(self.timing.heartbeat, 0.5)):
                renewed = await self._store.heartbeat(self.node_id, self.timing.lease)
        except (StoreUnavailable, TimeoutError) as error:
            reached = False
            if since < self.timing.heartbeat * 1.5:
                log.warning("node %s: heartbeat failed (%s)", self.node_id, error)
        if renewed is not None:
            if since > self.timing.heartbeat * 1.5:
                # Back after an outage: peers' heartbeats may look stale to us for a
                # moment; give them a lease to renew before reaping anyone.
                self._reap_after = self._clock.monotonic() + self.timing.lease
            self._last_renewal = sent
            self.peers = renewed.peers
            self._check_drift(renewed.config_hashes)
        return fence_decision(
            renewed,
            reached_store=reached,
            since_last_renewal=self._clock.monotonic() - self._last_renewal,
            peers_at_last_renewal=self.peers,
            lease=self.timing.lease,
        )

    async def reap(self, tasks: Mapping[str, TaskSpec]) -> Reaped:
        """One reaping pass (nothing right after this node regained the database)."""
        if self._clock.monotonic() < self._reap_after:
            return Reaped()
        reaped = await self._store.reap(self.node_id, self.timing.lease, tasks)
        self._report(reaped)
        return reaped

    async def leave(self) -> None:
        """Leave gracefully: release pending runs and slots, remove the node's row."""
        try:
            await self._store.leave(self.node_id)
        except StoreUnavailable as error:
            log.warning("node %s: could not leave cleanly (%s); peers reap it", self.node_id, error)

    def _check_drift(self, hashes: frozenset[str]) -> None:
        if config_drift(hashes) and hashes != self._drift_seen:
            log.warning(
                "live nodes run different configs (hashes %s; this node %s): tasks unknown "
                "to a node are never run by it",
                ", ".join(sorted(hashes)),
                self._config_hash,
            )
        self._drift_seen = hashes

    def _report(self, reaped: Reaped) -> None:
        if reaped.nodes:
            log.warning(
                "nodes %s declared dead: %d runs crashed, %d retries queued, %d pending runs "
                "and %d service slots taken over",
                ", ".join(reaped.nodes),
                len(reaped.crashed),
                len(reaped.retries),
                reaped.released,
                reaped.freed_slots,
            )
