"""Soak: three nodes on one database while a random one dies with its machine, over and over.

A cron task due every second and a 2-instance service run on 3 nodes (lease 3 s,
heartbeat 1 s, so failovers come often). Every few seconds a random node is killed hard
(``kill_node``: the daemon and its process groups at once) and restarted after a random
pause, sometimes before its lease runs out (the restarted daemon settles its previous
incarnation at once), sometimes after (a survivor reaps it). A thread counts the service's
processes every ~100 ms throughout. At the end the nodes leave gracefully.

What must hold: every tick recorded exactly once, with no gap between consecutive recorded
ticks longer than the lease + 2 s (the ticks' own timestamps, not the test's timing);
never more than 2 service processes; no run left ``running``.

``RUNWARDEN_SOAK_SECONDS`` (default 180) sets how long nodes are killed;
``RUNWARDEN_SOAK_SEED`` replays a sequence of kills (the seed is printed).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from adapters.postgres.embedded import run_coroutine
from tests.support.cluster import Nodes, cluster, kill_node, processes_with, wait_until

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("RUNWARDEN_SOAK_SECONDS", "180"))
LEASE = 3.0
INSTANCES = 2
NODES = 3

CONFIG = f"""
[scheduler]
timezone = "UTC"

[cluster]
lease = "{LEASE:g}s"
heartbeat = "1s"

[tasks.tick]
cron = "* * * * * *"
run = "true"

[services.web]
instances = {INSTANCES}
run = "sleep 600"
graceful_stop = "2s"
"""


class InstanceSampler(threading.Thread):
    """Counts the service's processes among the live nodes every ~100 ms until stopped."""

    def __init__(self, nodes: Nodes) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self._nodes = nodes
        self._stop_sampling = threading.Event()
        self.samples = 0
        self.most = 0
        self.over: list[tuple[float, list[int]]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        started = time.monotonic()
        while not self._stop_sampling.is_set():
            try:
                pids = processes_with(list(self._nodes.daemons), "RUNWARDEN_TASK", "web")
            except Exception as error:  # reported by the test, never raised in a thread
                self.errors.append(repr(error))
            else:
                self.samples += 1
                self.most = max(self.most, len(pids))
                if len(pids) > INSTANCES:
                    self.over.append((round(time.monotonic() - started, 1), pids))
            self._stop_sampling.wait(0.1)

    def finish(self) -> None:
        self._stop_sampling.set()
        self.join(10)


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def _sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    return run_coroutine(lambda: _fetch(url, query, *args))


def _unsettled(url: str) -> int:
    """Running runs whose node is not a live one: what survivors still have to reap."""
    rows = _sql(
        url,
        """
        SELECT count(*) FROM runs r
         WHERE r.status = 'running' AND NOT EXISTS (
               SELECT 1 FROM nodes n WHERE n.id = r.node_id AND n.state = 'up'
                  AND n.heartbeat_at >= now() - make_interval(secs => $1))
        """,
        LEASE,
    )
    return int(rows[0][0])


def test_a_cluster_with_nodes_dying_records_every_tick_once_and_keeps_its_instances(
    database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("RUNWARDEN_SOAK_SEED", str(time.time_ns() % 2**32)))
    rng = random.Random(seed)
    print(f"soak: seed {seed}, {SOAK_SECONDS:g} s of kills, logs under {tmp_path}")
    kills = 0
    exit_codes: list[int] = []
    with cluster(CONFIG, database_url, tmp_path, NODES) as nodes:
        sampler = InstanceSampler(nodes)
        sampler.start()
        try:
            wait_until(lambda: len(processes_with(nodes.live(), "RUNWARDEN_TASK", "web")) == 2)
            deadline = time.monotonic() + SOAK_SECONDS
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.5, 3.0))
                victim = rng.choice(nodes.live())
                kill_node(victim)
                kills += 1
                # Restarted before its lease runs out or well after it: both paths.
                time.sleep(rng.uniform(0.0, 2 * LEASE))
                nodes.start()
            assert len(nodes.live()) == NODES
            (end,) = _sql(database_url, "SELECT now()")
            end_at: datetime = end[0]
            # The last victim is settled (by its restart or a survivor) before anyone leaves.
            wait_until(lambda: _unsettled(database_url) == 0)
            wait_until(lambda: len(processes_with(nodes.live(), "RUNWARDEN_TASK", "web")) == 2)
            for daemon in nodes.live():
                exit_codes.append(daemon.terminate())
            # Nothing is left to settle it once the last node is gone: bounded, not timed.
            wait_until(
                lambda: not _sql(database_url, "SELECT 1 FROM runs WHERE status = 'running'")
            )
        finally:
            sampler.finish()

    ticks = _sql(
        database_url,
        """
        SELECT created_at, count(*) AS n FROM runs
         WHERE task_name = 'tick' AND retry_attempt = 0 AND created_at <= $1
         GROUP BY created_at ORDER BY created_at
        """,
        end_at,
    )
    outcomes = _sql(
        database_url,
        "SELECT task_name, status, coalesce(end_reason, '') AS reason, count(*) AS n"
        " FROM runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    instants = [row["created_at"] for row in ticks]
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    gaps.append(end_at - instants[-1] if instants else timedelta.max)
    widest = max(gaps)
    print(
        f"soak: {kills} kills, {len(instants)} ticks from {instants[0] if instants else None}"
        f" to {end_at}, widest gap {widest.total_seconds():.3f} s; {sampler.samples} samples"
        f" of the service, at most {sampler.most} processes; outcomes"
        f" {[tuple(r) for r in outcomes]}; exit codes {exit_codes}"
    )
    assert sampler.errors == []
    assert sampler.samples > 0
    assert kills >= 1
    assert [(r["created_at"], r["n"]) for r in ticks if r["n"] != 1] == []
    assert widest <= timedelta(seconds=LEASE + 2), [
        (str(a), str(b)) for a, b in itertools.pairwise(instants) if b - a > widest / 2
    ]
    assert sampler.over == []
    assert exit_codes == [0] * NODES
