"""Failover benchmark: how long a cluster takes to settle a node that died with its machine.

Two daemons on the bench database, default ``[cluster]`` settings (lease 6 s, heartbeat
2 s), a service ``bench-web`` of 2 instances and a long task ``bench-long``. Each of
``KILLS`` rounds: the victim is the node running most of the service's instances; one
``bench-long`` run is triggered on it; after a random pause (0 to one heartbeat, seeded,
so kills fall at every phase of the heartbeat) a ``SELECT now()`` gives the kill instant,
then the node dies as a machine does: the daemon is frozen (SIGSTOP), every process group
of its children is SIGKILLed, then the daemon. Measured from the kill instant, on the
database's clock:

- crashed: the victim's running runs all recorded ended (``crashed``): the latest
  ``end_at`` - kill instant (target ≤ 10 s);
- instances back: 2 instances of the service running on the survivor: the newest
  ``start_at`` of its running instances - kill instant (target ≤ 12 s).

The killed node is restarted only after both are recorded (a daemon restarted on the same
machine settles its dead predecessor at once, which would cut the lease wait short), so
there are 2 nodes again for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import psutil

from bench.env import Daemon, start_daemon
from bench.http import Connection

KILLS = int(os.environ.get("BENCH_FAILOVER_KILLS", "10"))
SEED = int(os.environ.get("BENCH_FAILOVER_SEED", "9"))
SERVICE = "bench-web"
LONG = "bench-long"
INSTANCES = 2
HEARTBEAT = 2.0  # the default [cluster] heartbeat: kills are spread over one period
ROUND_TIMEOUT = 60.0
POLL = 0.05
TARGET_CRASHED_S = 10.0
TARGET_BACK_S = 12.0

CONFIG = f"""
[scheduler]
timezone = "UTC"

[services.{SERVICE}]
instances = {INSTANCES}
run = "sleep 3600"

[tasks.{LONG}]
run = "sleep 3600"
"""


def kill_node(daemon: Daemon) -> None:
    """The machine dies: freeze the daemon, SIGKILL its children's process groups, then it."""
    if daemon.proc.poll() is not None:
        return
    os.kill(daemon.pid, signal.SIGSTOP)
    own = os.getpgid(0)
    groups = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(daemon.pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                groups.add(os.getpgid(child.pid))
    for group in groups - {own}:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    daemon.proc.kill()
    daemon.proc.wait(10)


async def _node_id(conn: asyncpg.Connection, daemon: Daemon) -> str:
    """The live node id of ``daemon`` (by its pid), waiting for it to have joined."""
    deadline = time.monotonic() + ROUND_TIMEOUT
    while time.monotonic() < deadline:
        found = await conn.fetchval(
            "SELECT id::text FROM nodes WHERE pid = $1 AND state = 'up'", daemon.pid
        )
        if found:
            return str(found)
        await asyncio.sleep(POLL)
    raise RuntimeError(f"daemon {daemon.pid} never joined the cluster")


async def _instances(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT node_id::text AS node, count(*) AS n FROM runs"
        " WHERE task_name = $1 AND status = 'running' GROUP BY node_id",
        SERVICE,
    )
    return {r["node"]: int(r["n"]) for r in rows}


async def _until(what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
    """Poll the coroutine function ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + ROUND_TIMEOUT
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(POLL)
    raise RuntimeError(f"failover: {what} not reached within {ROUND_TIMEOUT:.0f} s")


async def _trigger(daemon: Daemon, task: str) -> str:
    conn = await Connection(daemon.url).open()
    try:
        status, body = await conn.request("POST", f"/api/tasks/{task}/run", b"{}")
    finally:
        await conn.close()
    if status != 201:
        raise RuntimeError(f"trigger of {task} answered {status}: {body[:300]!r}")
    return str(json.loads(body)["id"])


async def _round(
    conn: asyncpg.Connection,
    daemons: dict[str, Daemon],
    rng: random.Random,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], str]:
    """One kill; returns the figures and the victim's node id."""
    held = await _until(
        f"{INSTANCES} instances of {SERVICE}",
        lambda: _settled(conn, daemons),
    )
    assert isinstance(held, dict)
    victim_id = max(held, key=lambda node: held[node])
    victim = daemons[victim_id]
    (survivor_id,) = set(daemons) - {victim_id}
    long_id = await _trigger(victim, LONG)
    owner = await _until(
        f"{LONG} running",
        lambda: conn.fetchval(
            "SELECT node_id::text FROM runs WHERE id = $1 AND status = 'running'", long_id
        ),
    )
    await asyncio.sleep(rng.uniform(0.0, HEARTBEAT))
    doomed = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM runs WHERE node_id = $1::uuid AND status = 'running'", victim_id
        )
    ]
    killed_at: datetime = await conn.fetchval("SELECT now()")
    kill_node(victim)
    ended = await _until(
        "the victim's runs recorded ended",
        lambda: _all_ended(conn, doomed),
    )
    assert isinstance(ended, tuple)
    last_end, reasons = ended
    back = await _until(
        f"{INSTANCES} instances of {SERVICE} on the survivor",
        lambda: conn.fetchval(
            "SELECT max(start_at) FROM runs WHERE task_name = $1 AND status = 'running'"
            " AND node_id = $2::uuid HAVING count(*) = $3",
            SERVICE,
            survivor_id,
            INSTANCES,
        ),
    )
    assert isinstance(back, datetime)
    processes = await _until(
        f"{INSTANCES} processes of {SERVICE} under the survivor",
        lambda: _processes(daemons[survivor_id]),
    )
    figures = {
        "victim_runs": len(doomed),
        "victim_instances": held[victim_id],
        "long_run_on_victim": owner == victim_id,
        "end_reasons": sorted(set(reasons)),
        "survivor_processes": processes,
        "crashed_s": round((last_end - killed_at).total_seconds(), 3),
        "instances_back_s": round((back - killed_at).total_seconds(), 3),
    }
    log(
        f"failover: kill of a node with {len(doomed)} running runs"
        f" ({held[victim_id]} instances): crashed after {figures['crashed_s']:.2f} s,"
        f" instances back after {figures['instances_back_s']:.2f} s"
    )
    return figures, victim_id


async def _processes(daemon: Daemon) -> int:
    """The service's processes the daemon runs, once there are ``INSTANCES`` of them."""
    found = 0
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(daemon.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                leader = os.getpgid(child.pid) == child.pid and child.status() != "zombie"
                if leader and child.environ().get("RUNWARDEN_TASK") == SERVICE:
                    found += 1
    return found if found == INSTANCES else 0


async def _settled(conn: asyncpg.Connection, daemons: dict[str, Daemon]) -> dict[str, int] | None:
    """Instances per node once exactly ``INSTANCES`` run, all on the given nodes."""
    held = await _instances(conn)
    if sum(held.values()) == INSTANCES and set(held) <= set(daemons):
        return held
    return None


async def _all_ended(conn: asyncpg.Connection, ids: list[str]) -> tuple[datetime, list[str]] | None:
    rows = await conn.fetch("SELECT status, end_at, end_reason FROM runs WHERE id = ANY ($1)", ids)
    if len(rows) < len(ids) or any(r["status"] != "ended" for r in rows):
        return None
    return max(r["end_at"] for r in rows), [r["end_reason"] for r in rows]


def _summary(values: list[float], target: float) -> dict[str, Any]:
    return {
        "p50_s": round(statistics.median(values), 2),
        "max_s": round(max(values), 2),
        "target_s": target,
        "met": max(values) <= target,
    }


async def failover(database_url: str, log: Callable[[str], None]) -> dict[str, Any]:
    """``KILLS`` hard kills of one node of two; crashed and instances-back times."""
    rng = random.Random(SEED)
    started = 0
    daemons: dict[str, Daemon] = {}
    conn = await asyncpg.connect(database_url)

    async def start() -> None:
        nonlocal started
        started += 1
        daemon = start_daemon(f"failover-node{started}", CONFIG, database_url)
        daemons[await _node_id(conn, daemon)] = daemon

    kills: list[dict[str, Any]] = []
    try:
        await start()
        await start()
        for round_ in range(KILLS):
            figures, victim_id = await _round(conn, daemons, rng, log)
            kills.append(figures)
            del daemons[victim_id]
            if round_ < KILLS - 1:
                await start()
    finally:
        for daemon in daemons.values():
            daemon.stop()
        await conn.close()
    crashed = _summary([k["crashed_s"] for k in kills], TARGET_CRASHED_S)
    back = _summary([k["instances_back_s"] for k in kills], TARGET_BACK_S)
    result: dict[str, Any] = {
        "kills": len(kills),
        "lease_s": 6.0,
        "heartbeat_s": HEARTBEAT,
        "seed": SEED,
        "crashed": crashed,
        "instances_back": back,
        "rounds": kills,
        "met": crashed["met"] and back["met"],
    }
    log(
        f"failover over {len(kills)} kills: crashed p50 {crashed['p50_s']} s,"
        f" max {crashed['max_s']} s (target ≤ {TARGET_CRASHED_S:g});"
        f" instances back p50 {back['p50_s']} s,"
        f" max {back['max_s']} s (target ≤ {TARGET_BACK_S:g})"
    )
    return result
