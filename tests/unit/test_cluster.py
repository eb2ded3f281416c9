"""The cluster's pure decisions: lease expiry, incarnations, fencing, slot spreading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory import FakeClock
from domain.cluster import (
    FenceAction,
    Heartbeat,
    NodeInfo,
    config_drift,
    fair_share,
    fence_decision,
    is_previous_incarnation,
    lease_expired,
    slots_to_claim,
)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def node(id: str, host: str = "a", pid: int = 100, boot: str = "b1") -> NodeInfo:
    return NodeInfo(id=id, host=host, pid=pid, boot_id=boot, version="1", config_hash="h")


def test_a_lease_expires_only_strictly_after_its_length_on_the_store_clock() -> None:
    clock = FakeClock(T0)
    beat = clock.now()
    clock.advance(6)
    assert not lease_expired(beat, clock.now(), 6.0)
    clock.advance(0.001)
    assert lease_expired(beat, clock.now(), 6.0)


def test_a_node_clock_running_behind_cannot_expire_anyone() -> None:
    # Only instants read from the store are compared: a node's own wall clock never enters.
    beat = T0
    assert not lease_expired(beat, T0 + timedelta(seconds=3), 6.0)


@pytest.mark.parametrize(
    ("other", "alive", "expected"),
    [
        (node("old", pid=42), False, True),  # same host and boot, pid gone
        (node("old", pid=42), True, False),  # its pid lives: maybe a live daemon
        (node("old", pid=7), True, True),  # our own pid: a restarted container
        (node("old", host="b", pid=42), False, False),  # another machine
        (node("old", boot="b0", pid=42), False, False),  # before a reboot: pids mean nothing
        (node("me", pid=7), False, False),  # ourselves
    ],
)
def test_only_a_dead_daemon_of_this_machine_is_a_previous_incarnation(
    other: NodeInfo, alive: bool, expected: bool
) -> None:
    me = node("me", pid=7)
    assert is_previous_incarnation(other, me, lambda _pid: alive) is expected


def test_a_renewed_lease_keeps_the_node() -> None:
    renewed = Heartbeat(peers=2, config_hashes=frozenset({"h"}))
    action = fence_decision(
        renewed, reached_store=True, since_last_renewal=0, peers_at_last_renewal=2, lease=6
    )
    assert action is FenceAction.KEEP


def test_a_node_the_store_no_longer_knows_as_up_fences_itself() -> None:
    action = fence_decision(
        None, reached_store=True, since_last_renewal=0.5, peers_at_last_renewal=0, lease=6
    )
    assert action is FenceAction.FENCE


@pytest.mark.parametrize(
    ("since", "peers", "expected"),
    [
        (2.0, 1, FenceAction.KEEP),  # a missed beat or two: not yet in danger
        (4.9, 1, FenceAction.KEEP),
        (5.0, 1, FenceAction.FENCE),  # lease - margin: survivors may reap us soon
        (60.0, 0, FenceAction.KEEP),  # alone: keep the processes through the outage
    ],
)
def test_a_node_cut_off_from_the_store_fences_itself_only_when_others_may_take_over(
    since: float, peers: int, expected: FenceAction
) -> None:
    action = fence_decision(
        None,
        reached_store=False,
        since_last_renewal=since,
        peers_at_last_renewal=peers,
        lease=6,
        margin=1,
    )
    assert action is expected


@pytest.mark.parametrize(
    ("instances", "nodes", "share"), [(2, 1, 2), (2, 2, 1), (2, 3, 1), (3, 2, 2), (5, 3, 2)]
)
def test_a_fair_share_is_the_ceiling_of_instances_over_live_nodes(
    instances: int, nodes: int, share: int
) -> None:
    assert fair_share(instances, nodes) == share


def test_a_node_claims_up_to_its_fair_share_then_waits_for_the_others() -> None:
    claim = {"instances": 3, "live_nodes": 2, "patience": 3.0}
    assert slots_to_claim(owned=0, free=3, free_for=0.0, **claim) == 2
    assert slots_to_claim(owned=2, free=1, free_for=0.0, **claim) == 0
    assert slots_to_claim(owned=1, free=1, free_for=0.0, **claim) == 1
    assert slots_to_claim(owned=0, free=0, free_for=9.0, **claim) == 0


def test_slots_nobody_else_takes_are_taken_beyond_the_fair_share() -> None:
    claim = {"instances": 4, "live_nodes": 2, "patience": 3.0}
    assert slots_to_claim(owned=2, free=2, free_for=2.9, **claim) == 0
    assert slots_to_claim(owned=2, free=2, free_for=3.0, **claim) == 2


def test_config_drift_is_more_than_one_hash_among_live_nodes() -> None:
    assert not config_drift(["a", "a"])
    assert config_drift(["a", "b"])
    assert not config_drift([])
