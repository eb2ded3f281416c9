"""Reading a 200 MB log back: ``GET .../log/raw`` and the SSE stream from line 0.

The log is one run of ``head -c 150000000 /dev/urandom | base64 -w 76``: 200 MB of
hard-to-compress text in ~2.6 M lines of 76 characters. Both reads are made by ``curl``
in a separate process (so the client is not the limit), each ``READS`` times; the
daemon's RSS is sampled every 20 ms while they last.

The storage read floor, in the same run: the same chunks (``run_logs.body``, already
decompressed by the server) read by asyncpg in primary-key order, ``FLOOR_ROWS`` per query,
and written to a Unix socket that a ``cat > /dev/null`` process drains.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.env import TOKEN, Daemon, Usage, start_daemon
from bench.profile import recording, summarize

SIZE = 150_000_000  # random bytes; base64 makes 200 MB of text of them
TASK = "bench-logread"
READS = 2
FLOOR_ROWS = 32
COMMAND = f"head -c {SIZE} /dev/urandom | base64 -w 76"

CONFIG = f"""
[scheduler]
timezone = "UTC"

[tasks.{TASK}]
run = "{COMMAND}"
log_max_size = "1GB"
timeout = "30m"
"""


async def storage_read_floor(database_url: str, run_id: str) -> tuple[float, int]:
    """(MB/s, bytes) of the run's chunk bodies read by asyncpg and written to a socket."""
    ours, theirs = socket.socketpair()
    sink = await asyncio.create_subprocess_exec(
        "cat", stdin=theirs.fileno(), stdout=asyncio.subprocess.DEVNULL
    )
    theirs.close()
    conn = await asyncpg.connect(database_url)
    sent = 0
    try:
        _, writer = await asyncio.open_unix_connection(sock=ours)
        query = (
            "SELECT first_n, body FROM run_logs WHERE run_id = $1 AND first_n >= $2"
            " ORDER BY first_n LIMIT $3"
        )
        started = time.perf_counter()
        first = 0
        while rows := await conn.fetch(query, run_id, first, FLOOR_ROWS):
            for row in rows:
                writer.write(row["body"])
                sent += len(row["body"])
            await writer.drain()
            first = rows[-1]["first_n"] + 1
        writer.close()
        await writer.wait_closed()
        await sink.wait()
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
        if sink.returncode is None:
            sink.kill()
            await sink.wait()
    return sent / 1e6 / seconds, sent


async def _curl(url: str) -> tuple[int, float]:
    """(bytes, seconds) of one GET read to the end by curl."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}",
        "-w", "%{size_download} %{time_total}", url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"curl {url} failed with {proc.returncode}")
    size, seconds = out.decode().split()
    return int(size), float(seconds)


async def _sampled(daemon: Daemon, read: asyncio.Task[tuple[int, float]]) -> float:
    """The daemon's peak RSS while ``read`` runs."""
    peak = daemon.rss_mb()
    while not read.done():
        peak = max(peak, daemon.rss_mb())
        await asyncio.sleep(0.02)
    return peak


async def _reads(daemon: Daemon, path: str) -> dict[str, Any]:
    best: tuple[int, float] | None = None
    peak = 0.0
    for _ in range(READS):
        task = asyncio.create_task(_curl(daemon.url + path))
        peak = max(peak, await _sampled(daemon, task))
        size, seconds = await task
        if best is None or seconds < best[1]:
            best = (size, seconds)
    assert best is not None
    return {"bytes": best[0], "seconds": round(best[1], 2), "rss_peak_mb": round(peak, 1)}


async def read_back(
    database_url: str, log: Callable[[str], None], profile: bool = False
) -> dict[str, Any]:
    """Write the 200 MB log, then time the raw download and the SSE replay against it."""
    daemon = start_daemon("logread", CONFIG, database_url)
    conn = await asyncpg.connect(database_url)
    try:
        status, run_id = await _run_to_end(daemon, conn)
        meta = await conn.fetchrow(
            "SELECT total_lines, stored_bytes FROM run_log_meta WHERE run_id = $1", run_id
        )
        lines, text = int(meta["total_lines"]), int(meta["stored_bytes"])
        floor, floor_bytes = await storage_read_floor(database_url, run_id)
        log(f"log read: {lines:,} lines, {text / 1e6:.0f} MB; floor {floor:.0f} MB/s")
        base = f"/api/tasks/{TASK}/runs/{run_id}/log"
        rss_idle = daemon.rss_mb()
        with recording(daemon.pid, "logread-raw", profile) as raw_profile:
            usage = Usage(daemon)
            raw = await _reads(daemon, base + "/raw")
            raw |= usage.result()
        with recording(daemon.pid, "logread-stream", profile) as stream_profile:
            usage = Usage(daemon)
            stream = await _reads(daemon, base + "/stream")
            stream |= usage.result()
    finally:
        await conn.close()
        daemon.stop()
    raw_rate = raw["bytes"] / 1e6 / raw["seconds"]
    stream_rate = lines / stream["seconds"]
    result = {
        "end_reason": status,
        "lines": lines,
        "text_bytes": text,
        "floor_bytes": floor_bytes,
        "baseline_read_mb_per_s": round(floor, 1),
        "raw": raw | {"mb_per_s": round(raw_rate, 1), "profile": summarize(raw_profile)},
        "raw_ratio": round(raw_rate / floor, 3),
        "raw_target_ratio": 0.5,
        "raw_met": raw_rate / floor >= 0.5,
        "stream": stream
        | {"lines_per_s": round(stream_rate), "profile": summarize(stream_profile)},
        "stream_target_lines_per_s": 300_000,
        "stream_met": stream_rate >= 300_000,
        "rss_idle_mb": round(rss_idle, 1),
    }
    log(
        f"log read: raw {raw_rate:.0f} MB/s ({result['raw_ratio']:.0%} of the floor),"
        f" SSE {stream_rate:,.0f} lines/s; RSS peak {raw['rss_peak_mb']:.0f} /"
        f" {stream['rss_peak_mb']:.0f} MB"
    )
    return result


async def _run_to_end(daemon: Daemon, conn: asyncpg.Connection) -> tuple[str, str]:
    since = await conn.fetchval("SELECT now()")
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "-o", "/dev/null", "-X", "POST", "-H",
        f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json", "-d", "{}",
        f"{daemon.url}/api/tasks/{TASK}/run",
    )  # fmt: skip
    if await proc.wait() != 0:
        raise RuntimeError("the log task could not be triggered")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            "SELECT id, status, end_reason FROM runs WHERE task_name = $1 AND created_at >= $2",
            TASK,
            since,
        )
        if row is not None and row["status"] == "ended":
            return str(row["end_reason"]), str(row["id"])
        await asyncio.sleep(0.25)
    raise RuntimeError("the log run did not end within 10 minutes")
