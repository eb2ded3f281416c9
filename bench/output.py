"""Output benchmark: one run printing 200 MB of log lines, and reading pages of its log.

Captured rate: the output's bytes over the run's ``end_at - start_at`` (the run ends once
its output is stored). Two floors measured in the same run: the same command with its
output sent to ``/dev/null`` (the pipe), and the same bytes read from a pipe in 64 KiB
chunks by this process and written with asyncpg ``COPY`` into a scratch table compressed
like ``run_logs.body`` (the storage floor). The daemon's RSS is sampled every 20 ms while
the run lasts. Reading: a page of 1,000 lines at the start, the middle and the end of the
log through ``GET .../log?from=N&limit=1000``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from bench.env import Daemon, Usage, start_daemon
from bench.http import Connection, summary, timed
from bench.profile import recording, summarize

SIZE = 200_000_000
LINE = "2026-11-29T10:15:42.123Z INFO worker[42]: processed batch ok=1"  # 61 bytes + \n
COMMAND = f"yes '{LINE}' | head -c {SIZE}"
TASK = "bench-output"
PAGE_REQUESTS = 50

CONFIG = f"""
[scheduler]
timezone = "UTC"

[tasks.{TASK}]
run = "{COMMAND}"
log_max_size = "1GB"
timeout = "30m"
"""


async def pipe_floor() -> float:
    """MB/s of the command with its output thrown away by the shell."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_shell(f"{COMMAND} > /dev/null")
    await proc.wait()
    return SIZE / 1e6 / (time.perf_counter() - started)


async def storage_floor(database_url: str) -> float:
    """MB/s of the output read in 64 KiB chunks and copied into PostgreSQL as they come."""
    conn = await asyncpg.connect(database_url)
    try:
        # Logged and compressed like run_logs: the floor pays for the WAL and the TOAST
        # compression the daemon pays for.
        method = await conn.fetchval(
            "SELECT attcompression::text FROM pg_attribute"
            " WHERE attrelid = 'run_logs'::regclass AND attname = 'body'"
        )
        compression = {"l": " COMPRESSION lz4", "p": " COMPRESSION pglz"}.get(method, "")
        await conn.execute("DROP TABLE IF EXISTS bench_copy_floor")
        await conn.execute(
            f"CREATE TABLE bench_copy_floor (run_id text, seq integer, body bytea{compression})"
        )
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_shell(COMMAND, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        stdout = proc.stdout

        async def chunks() -> AsyncIterator[tuple[str, int, bytes]]:
            seq = 0
            while chunk := await stdout.read(65536):
                yield ("floor", seq, chunk)
                seq += 1

        await conn.copy_records_to_table("bench_copy_floor", records=chunks())
        await proc.wait()
        seconds = time.perf_counter() - started
        stored = await conn.fetchval("SELECT sum(length(body)) FROM bench_copy_floor")
        if stored != SIZE:
            raise RuntimeError(f"storage floor stored {stored} bytes, not {SIZE}")
        return SIZE / 1e6 / seconds
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_copy_floor")
        await conn.close()


async def capture(
    database_url: str, log: Callable[[str], None], profile: bool = False
) -> dict[str, Any]:
    """Run the 200 MB task under the daemon; rate, peak RSS and log page reads."""
    pipe = await pipe_floor()
    floor = await storage_floor(database_url)
    log(f"output: floors: pipe {pipe:.0f} MB/s, asyncpg COPY of 64 KiB chunks {floor:.0f} MB/s")
    daemon = start_daemon("output", CONFIG, database_url)
    conn = await asyncpg.connect(database_url)
    http = await Connection(daemon.url).open()
    try:
        rss_before = daemon.rss_mb()
        status, body = await http.request("POST", f"/api/tasks/{TASK}/run", b"{}")
        if status != 201:
            raise RuntimeError(f"trigger answered {status}: {body[:300]!r}")
        run_id = (await conn.fetchval(
            "SELECT id FROM runs WHERE task_name = $1 ORDER BY created_at DESC LIMIT 1", TASK
        ))  # fmt: skip
        with recording(daemon.pid, "output", profile) as profile_path:
            usage = Usage(daemon)
            row, peak = await _follow(daemon, conn, run_id, rss_before)
            cpu = usage.result()
        meta = await conn.fetchrow(
            "SELECT total_lines, stored_bytes FROM run_log_meta WHERE run_id = $1", run_id
        )
        seconds = (row["end_at"] - row["start_at"]).total_seconds()
        rate = SIZE / 1e6 / seconds
        pages = await _read_pages(http, run_id, int(meta["total_lines"]) if meta else 0)
        rss_after = daemon.rss_mb()
    finally:
        await http.close()
        await conn.close()
        daemon.stop()
    result = {
        "bytes": SIZE,
        "end_reason": row["end_reason"],
        "seconds": round(seconds, 2),
        "mb_per_s": round(rate, 1),
        "baseline_pipe_mb_per_s": round(pipe, 1),
        "baseline_storage_mb_per_s": round(floor, 1),
        "ratio_to_storage": round(rate / floor, 3),
        "target_ratio": 0.5,
        "met": rate / floor >= 0.5,
        "lines_stored": int(meta["total_lines"]) if meta else 0,
        "text_bytes_stored": int(meta["stored_bytes"]) if meta else 0,
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_target_mb": 150.0,
        "rss_met": peak <= 150.0,
        "log_pages": pages,
        **cpu,
        "profile": summarize(profile_path),
    }
    log(
        f"output: {rate:.0f} MB/s captured ({result['ratio_to_storage']:.0%} of the storage"
        f" floor), {result['lines_stored']:,} lines; RSS peak {peak:.0f} MB"
    )
    return result


async def _follow(
    daemon: Daemon, conn: asyncpg.Connection, run_id: str, peak: float
) -> tuple[asyncpg.Record, float]:
    """Sample the daemon's RSS every 20 ms until the run ends; its row and the peak."""
    last_poll = 0.0
    deadline = time.monotonic() + 1800
    while True:
        peak = max(peak, daemon.rss_mb())
        if time.monotonic() - last_poll > 0.25:
            last_poll = time.monotonic()
            row = await conn.fetchrow(
                "SELECT status, end_reason, start_at, end_at FROM runs WHERE id = $1", run_id
            )
            if row["status"] == "ended":
                return row, peak
            if time.monotonic() > deadline:
                raise RuntimeError("the output run did not end within 30 minutes")
        await asyncio.sleep(0.02)


async def _read_pages(http: Connection, run_id: str, total: int) -> dict[str, Any]:
    """p50/p99 of a 1,000-line page at the start, middle and end of the log."""
    pages = {}
    base = f"/api/tasks/{TASK}/runs/{run_id}/log"
    for name, first in (("start", 0), ("middle", total // 2), ("end", max(total - 1000, 0))):
        path = f"{base}?from={first}&limit=1000"
        stats = summary(await timed(functools.partial(http.get, path), PAGE_REQUESTS))
        pages[name] = {"from": first, **stats, "target_p99_ms": 20.0}
        pages[name]["met"] = stats["p99_ms"] <= 20.0
    return pages
