"""The cluster's decisions: leases, fencing, incarnations and how service slots spread.

Several daemons (nodes) share one database. Each holds a lease it renews by heart-beating;
the database's clock alone decides whether a lease expired (``lease_expired`` is applied
to instants read from it), so clock skew between machines cannot kill a node. A node
measures only *durations* on its own monotonic clock: how long since its last renewal
went through (``fence_decision``).

Everything here is pure: the runtime in ``app/runtime/node.py`` feeds it what the
``ClusterStore`` port read and acts on the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

DEFAULT_HEARTBEAT = 2.0
"""Seconds between a node's heartbeats (``[cluster] heartbeat``)."""
DEFAULT_LEASE = 6.0
"""Seconds without a heartbeat after which a node is dead (``[cluster] lease``)."""
FENCE_MARGIN = 1.0
"""Seconds before its lease could expire at which a node that cannot renew it stops its
processes: survivors may reap it from then on, so it must not be running anything."""


class NodeState(StrEnum):
    """A node row's state."""

    UP = "up"
    """Heart-beating; owns the runs and slots recorded with its id."""
    DEAD = "dead"
    """Reaped by a survivor (or settled by its own next incarnation): owns nothing."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node says about itself when it registers."""

    id: str
    host: str
    pid: int
    boot_id: str
    version: str
    config_hash: str


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node as the store knows it; ``alive`` is judged on the store's clock."""

    info: NodeInfo
    started_at: datetime
    heartbeat_at: datetime
    state: NodeState
    alive: bool
    running_runs: int


def lease_expired(heartbeat_at: datetime, now: datetime, lease: float) -> bool:
    """Whether a lease renewed at ``heartbeat_at`` has expired at ``now`` (both read from
    the store's clock)."""
    return heartbeat_at < now - timedelta(seconds=lease)


def is_previous_incarnation(
    other: NodeInfo, me: NodeInfo, pid_alive: Callable[[int], bool]
) -> bool:
    """Whether ``other`` is provably an earlier run of a daemon on this machine that died.

    Only then may a starting node settle it at once instead of waiting for its lease: same
    host name and boot (so its pids are ours to check), and its pid is gone or is our own
    (a container restarted with the same pid namespace layout).
    """
    if other.id == me.id or other.host != me.host or other.boot_id != me.boot_id:
        return False
    return other.pid == me.pid or not pid_alive(other.pid)


class FenceAction(StrEnum):
    """What a node does after a heartbeat attempt."""

    KEEP = "keep"
    """Carry on: the lease is renewed, or it is still ours to hold."""
    FENCE = "fence"
    """Stop every process now, write nothing more as this node, rejoin with a new id."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A renewed lease: how many other nodes were alive and what configs they run."""

    peers: int
    config_hashes: frozenset[str]


def fence_decision(
    renewed: Heartbeat | None,
    *,
    reached_store: bool,
    since_last_renewal: float,
    peers_at_last_renewal: int,
    lease: float,
    margin: float = FENCE_MARGIN,
) -> FenceAction:
    """Decide after a heartbeat attempt.

    - The store answered and our row is gone or dead (``renewed`` None, ``reached_store``):
      another node reaped us; everything we hold is no longer ours.
    - The store did not answer: while other nodes were alive at our last renewal, they will
      reap us once the lease runs out, so we stop before that (``lease - margin`` after the
      last renewal, on our monotonic clock). A node that was alone keeps its processes
      through the outage: nobody will take them over.
    """
    if renewed is not None:
        return FenceAction.KEEP
    if reached_store:
        return FenceAction.FENCE
    if peers_at_last_renewal > 0 and since_last_renewal >= lease - margin:
        return FenceAction.FENCE
    return FenceAction.KEEP


def fair_share(instances: int, live_nodes: int) -> int:
    """The most slots of a service one node takes while others could take them:
    ⌈instances / live nodes⌉."""
    return math.ceil(instances / max(live_nodes, 1))


def slots_to_claim(
    *, instances: int, live_nodes: int, owned: int, free: int, free_for: float, patience: float
) -> int:
    """How many free slots of a service this node claims now.

    Up to its fair share; beyond it only when slots have stayed free for ``patience``
    seconds (the other nodes cannot take them: they do not know the service, or are
    saturated), so a service never runs fewer instances than asked while any node could
    run them. Never more than are free.
    """
    if free <= 0:
        return 0
    if free_for >= patience:
        return free
    return max(0, min(free, fair_share(instances, live_nodes) - owned))


def config_drift(hashes: Collection[str]) -> bool:
    """Whether the live nodes run different configs."""
    return len(set(hashes)) > 1
