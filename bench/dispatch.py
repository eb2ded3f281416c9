"""Dispatch benchmark: API triggers of ``true`` per second, and cron tick to start delay.

Triggers: ``TRIGGERS`` POSTs to ``/api/tasks/bench-true/run`` from ``CLIENTS`` keep-alive
connections; the task admits ``CONCURRENCY`` runs at a time and queues the rest. The rate
is successful runs over the span from the first ``created_at`` to the last ``end_at``.
Baseline in the same run: ``asyncio.create_subprocess_exec("true")`` in this process, as
many at a time, as many in all. The same measurement with 2 daemons on the database (a
cluster): the clients spread over both APIs, ``max_concurrent`` cluster-wide.

Cron: ``CRON_TASKS`` tasks due every second (``* * * * * *``) for ``CRON_SECONDS``; the
delay of a run is ``start_at - created_at`` (created_at is the scheduled tick).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.env import WORK, Daemon, Usage, start_daemon
from bench.http import Connection, percentile
from bench.profile import recording, summarize

TRIGGERS = 2000
CLIENTS = 16
CONCURRENCY = 8
CRON_TASKS = 200
CRON_SECONDS = 8
TASK = "bench-true"

TRIGGER_CONFIG = f"""
[scheduler]
timezone = "UTC"

[tasks.{TASK}]
run = "true"
max_concurrent = {CONCURRENCY}
queue_max = {TRIGGERS}
"""


def cron_config(count: int = CRON_TASKS) -> str:
    """``count`` tasks due every second, default settings otherwise.

    They start with no tick history (the cleanup deletes their ``task_ticks``), so nothing
    is caught up at start.
    """
    tasks = "".join(
        f'\n[tasks.bench-cron-{i:03d}]\ncron = "* * * * * *"\nrun = "true"\n' for i in range(count)
    )
    return f'[scheduler]\ntimezone = "UTC"\n{tasks}'


async def raw_spawn_rate(count: int = TRIGGERS, concurrency: int = CONCURRENCY) -> float:
    """``true`` processes per second through asyncio, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def _trigger_all(urls: list[str]) -> float:
    """``TRIGGERS`` POSTs from ``CLIENTS`` connections, the clients spread over ``urls``."""
    queue = list(range(TRIGGERS))

    async def client(url: str) -> None:
        conn = await Connection(url).open()
        try:
            while queue:
                queue.pop()
                status, body = await conn.request("POST", f"/api/tasks/{TASK}/run", b"{}")
                if status != 201:
                    raise RuntimeError(f"trigger answered {status}: {body[:300]!r}")
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(CLIENTS)))
    return time.perf_counter() - started


async def triggers(
    database_url: str,
    log: Callable[[str], None],
    profile: bool = False,
    nodes: int = 1,
    raw: float | None = None,
) -> dict[str, Any]:
    """Trigger ``TRIGGERS`` runs of ``true`` through the API and time them to the end.

    With ``nodes`` > 1, that many daemons share the database (a cluster) and the clients
    are spread over their APIs; ``max_concurrent`` holds cluster-wide. ``raw`` reuses a
    baseline measured earlier in the same run.
    """
    if raw is None:
        raw = await raw_spawn_rate()
        log(f"dispatch: raw asyncio spawn of 'true', {CONCURRENCY} at a time: {raw:.0f}/s")
    suffix = "" if nodes == 1 else f"-{nodes}-nodes"
    daemons: list[Daemon] = []
    conn = await asyncpg.connect(database_url)
    try:
        for i in range(nodes):
            name = f"dispatch{suffix}" + (f"-{i + 1}" if nodes > 1 else "")
            daemons.append(start_daemon(name, TRIGGER_CONFIG, database_url))
        since: datetime = await conn.fetchval("SELECT now()")
        query = """
            SELECT count(*) FILTER (WHERE status = 'ended') AS ended,
                   count(*) FILTER (WHERE end_reason = 'success') AS success,
                   min(created_at) AS first, max(end_at) AS last,
                   count(DISTINCT node_id) AS nodes
            FROM runs WHERE task_name = $1 AND created_at >= $2
        """
        with recording(daemons[0].pid, f"dispatch{suffix}", profile) as profile_path:
            usages = [Usage(daemon) for daemon in daemons]
            post_seconds = await _trigger_all([daemon.url for daemon in daemons])
            deadline = time.monotonic() + 300
            while (row := await conn.fetchrow(query, TASK, since))["ended"] < TRIGGERS:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {row['ended']} of {TRIGGERS} runs ended in 300 s")
                await asyncio.sleep(0.2)
            cpus = [usage.result() for usage in usages]
        per_node = await conn.fetch(
            "SELECT count(*) AS n FROM runs WHERE task_name = $1 AND created_at >= $2"
            " GROUP BY node_id ORDER BY 1 DESC",
            TASK,
            since,
        )
    finally:
        await conn.close()
        for daemon in daemons:
            daemon.stop()
    span = (row["last"] - row["first"]).total_seconds()
    rate = row["success"] / span
    cpu = {
        "daemon_cpu_pct": round(sum(c["daemon_cpu_pct"] for c in cpus), 1),
        "machine_busy_pct": cpus[0]["machine_busy_pct"],  # the first call spans it all
    }
    result = {
        "nodes": nodes,
        "triggers": TRIGGERS,
        "clients": CLIENTS,
        "max_concurrent": CONCURRENCY,
        "success": row["success"],
        "seconds": round(span, 2),
        "post_seconds": round(post_seconds, 2),
        "runs_per_s": round(rate, 1),
        "baseline_spawn_per_s": round(raw, 1),
        "ratio": round(rate / raw, 3),
        "target_ratio": 0.5,
        "met": rate / raw >= 0.5,
        "runs_per_node": [int(r["n"]) for r in per_node],
        **cpu,
        "profile": summarize(profile_path),
    }
    where = "" if nodes == 1 else f" on {nodes} nodes (runs per node {result['runs_per_node']})"
    log(f"dispatch{where}: {rate:.0f} runs/s recorded success ({result['ratio']:.0%} of raw spawn)")
    return result


async def cron(
    database_url: str, log: Callable[[str], None], profile: bool = False
) -> dict[str, Any]:
    """Delay from tick to start for ``CRON_TASKS`` tasks due the same second."""
    daemon = start_daemon("cron", cron_config(), database_url)
    conn = await asyncpg.connect(database_url)
    try:
        # Ticks from the second after the daemon is ready until a second before it stops.
        with recording(daemon.pid, "cron", profile) as profile_path:
            usage = Usage(daemon)
            first: datetime = await conn.fetchval(
                "SELECT date_trunc('second', now()) + interval '1 s'"
            )
            await asyncio.sleep(CRON_SECONDS)
            last: datetime = await conn.fetchval(
                "SELECT date_trunc('second', now()) - interval '1 s'"
            )
            await asyncio.sleep(2)  # let the last ticks start
            cpu = usage.result()
    finally:
        daemon.stop()
    try:
        rows = await conn.fetch(
            """
            SELECT extract(epoch FROM start_at - created_at) * 1000 AS delay_ms, status,
                   coalesce(end_reason, status) AS outcome, created_at
            FROM runs WHERE task_name LIKE 'bench-cron-%' AND retry_attempt = 0
              AND created_at BETWEEN $1 AND $2
            """,
            first,
            last,
        )
    finally:
        await conn.close()
    ticks = round((last - first).total_seconds()) + 1
    delays = [float(r["delay_ms"]) for r in rows if r["delay_ms"] is not None]
    # The slowest start of each second: a p99 over 7 bursts is the worst one or two.
    worst: dict[datetime, float] = {}
    for r in rows:
        if r["delay_ms"] is not None:
            tick = r["created_at"]
            worst[tick] = max(worst.get(tick, 0.0), float(r["delay_ms"]))
    result = {
        "tasks": CRON_TASKS,
        "max_ms_per_tick": [round(worst[t], 1) for t in sorted(worst)],
        "ticks": ticks,
        "expected_runs": ticks * CRON_TASKS,
        "runs": len(rows),
        "started": len(delays),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "p50_ms": round(percentile(delays, 0.5), 1) if delays else None,
        "p99_ms": round(percentile(delays, 0.99), 1) if delays else None,
        "max_ms": round(max(delays), 1) if delays else None,
        "target_p99_ms": 100.0,
        **cpu,
        "profile": summarize(profile_path),
    }
    result["met"] = bool(delays) and percentile(delays, 0.99) <= 100.0
    log(
        f"cron: {len(delays)} of {result['expected_runs']} ticks started;"
        f" tick->start p50 {result['p50_ms']} p99 {result['p99_ms']} ms;"
        f" slowest start per tick {result['max_ms_per_tick']} ms"
    )
    return result


BURST_TASKS = 1000
BURST_EVERY = 15
"""Seconds between the bursts: every task is due at each multiple of it."""
BURSTS = 2
BURST_TARGET = 1.5
"""All of a burst started within this many times the raw spawn of as many processes."""


STAMPS = WORK / "burst-stamps.txt"
"""Where each burst run writes the moment its process began (``date``, in ns)."""


def burst_config(count: int = BURST_TASKS) -> str:
    """``count`` tasks due at the same seconds (every ``BURST_EVERY`` s), defaults otherwise.

    Each run's process appends the wall-clock time it began executing to :data:`STAMPS`
    (the shell execs ``date`` with its output appended there; nothing goes to the log).
    """
    run = f"exec date +%s%N >> {STAMPS}"
    cron = f"*/{BURST_EVERY} * * * * *"
    tasks = "".join(
        f"\n[tasks.bench-burst-{i:04d}]\ncron = \"{cron}\"\nrun = '{run}'\n" for i in range(count)
    )
    return f'[scheduler]\ntimezone = "UTC"\n{tasks}'


def _process_starts(ticks: list[datetime]) -> list[dict[str, Any]]:
    """Per tick: how many processes began in its window, p50 and last (ms after it)."""
    stamps = [int(line) / 1e9 for line in STAMPS.read_text().split()] if STAMPS.exists() else []
    out = []
    for tick in ticks:
        t = tick.timestamp()
        delays = sorted((s - t) * 1000 for s in stamps if t <= s < t + BURST_EVERY)
        out.append(
            {
                "processes": len(delays),
                "p50_process_ms": round(percentile(delays, 0.5), 1) if delays else None,
                "last_process_ms": round(delays[-1], 1) if delays else None,
            }
        )
    return out


async def raw_burst_seconds(count: int = BURST_TASKS, *argv: str) -> float:
    """Seconds to spawn ``count`` processes (``true`` unless ``argv``) at once through
    asyncio, and reap them."""

    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(*(argv or ("true",)))
        await proc.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


async def burst(
    database_url: str, log: Callable[[str], None], profile: bool = False
) -> dict[str, Any]:
    """``BURST_TASKS`` tasks due the same second: how long until the last one started.

    Per burst: when the processes began (each writes its clock reading to ``STAMPS``),
    and, from the database, the last ``start_at`` (when the run took its slot, recorded
    with the tick) and ``end_at`` after the tick; beside the raw spawn of as many
    processes (``true``, all at once, until all have exited) measured just before.
    """
    raw = await raw_burst_seconds()
    # The tasks' own command through the shell, as the daemon runs it (for context).
    raw_shell = await raw_burst_seconds(
        BURST_TASKS, "/bin/sh", "-c", "exec date +%s%N >> /dev/null"
    )
    log(
        f"burst: raw asyncio spawn of {BURST_TASKS} at once: 'true' {raw * 1000:.0f} ms,"
        f" the task's command through sh {raw_shell * 1000:.0f} ms"
    )
    STAMPS.unlink(missing_ok=True)
    daemon = start_daemon("burst", burst_config(), database_url)
    conn = await asyncpg.connect(database_url)
    try:
        now: datetime = await conn.fetchval("SELECT now()")
        # The first tick at least 2 s away, so the daemon is settled when it comes.
        epoch = now.timestamp() + 2
        first = datetime.fromtimestamp(math.ceil(epoch / BURST_EVERY) * BURST_EVERY, UTC)
        ticks = [first + timedelta(seconds=BURST_EVERY * i) for i in range(BURSTS)]
        with recording(daemon.pid, "burst", profile) as profile_path:
            usage = Usage(daemon)
            wait = (ticks[-1] - now).total_seconds() + BURST_EVERY - 2
            await asyncio.sleep(wait)
            cpu = usage.result()
        rows = await conn.fetch(
            """
            SELECT created_at, count(*) AS runs, count(start_at) AS started,
                   count(*) FILTER (WHERE end_reason = 'success') AS success,
                   extract(epoch FROM max(start_at) - created_at) * 1000 AS last_start_ms,
                   extract(epoch FROM percentile_cont(0.5) WITHIN GROUP
                       (ORDER BY start_at - created_at)) * 1000 AS p50_start_ms,
                   extract(epoch FROM max(end_at) - created_at) * 1000 AS last_end_ms
            FROM runs WHERE task_name LIKE 'bench-burst-%' AND created_at = ANY($1::timestamptz[])
            GROUP BY created_at ORDER BY created_at
            """,
            ticks,
        )
        recorded = await conn.fetchval(
            "SELECT count(*) FROM task_ticks WHERE task_name LIKE 'bench-burst-%'"
        )
    finally:
        await conn.close()
        daemon.stop()
    starts = _process_starts(ticks)
    bursts = [
        {
            "tick": r["created_at"].isoformat(),
            "runs": int(r["runs"]),
            "started": int(r["started"]),
            "success": int(r["success"]),
            "p50_start_ms": round(float(r["p50_start_ms"]), 1),
            "last_start_ms": round(float(r["last_start_ms"]), 1),
            "last_end_ms": round(float(r["last_end_ms"] or 0), 1),
            **process,
        }
        for r, process in zip(rows, starts, strict=False)
    ]
    complete = len(bursts) == BURSTS and all(
        b["runs"] == b["started"] == b["success"] == b["processes"] == BURST_TASKS for b in bursts
    )
    # Started = the process began executing (its own clock reading), not the run recorded.
    worst = max((b["last_process_ms"] or float("inf") for b in bursts), default=float("inf"))
    result = {
        "tasks": BURST_TASKS,
        "bursts": bursts,
        "task_ticks_rows": int(recorded),
        "baseline_spawn_ms": round(raw * 1000, 1),
        "baseline_shell_spawn_ms": round(raw_shell * 1000, 1),
        "last_start_ms": worst,
        "ratio": round(worst / (raw * 1000), 2),
        "target_ratio": BURST_TARGET,
        "complete": complete,
        "met": complete and worst <= BURST_TARGET * raw * 1000,
        **cpu,
        "profile": summarize(profile_path),
    }
    shown = [
        (b["processes"], b["p50_process_ms"], b["last_process_ms"], b["last_start_ms"])
        for b in bursts
    ]
    log(
        f"burst: (processes, p50, last process start, last start_at ms) per burst {shown};"
        f" {result['ratio']}x raw spawn"
    )
    return result
