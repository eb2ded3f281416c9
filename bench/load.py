"""Throughput under concurrent clients, from a separate process.

``wrk`` (Debian package ``wrk``) when it is installed; otherwise this module itself in a
subprocess: ``python -m bench.load URL SECONDS CONNECTIONS`` opens that many keep-alive
connections on one event loop and prints ``{"requests", "seconds", "rps", "errors"}``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from bench.env import TOKEN

CONNECTIONS = 16
SECONDS = 10


def _wrk(url: str, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"tool": "wrk", "rps": round(rps, 1), "errors": int(errors.group(1)) if errors else 0}


async def _client(url: str, seconds: float, connections: int) -> dict[str, Any]:
    from bench.http import Connection

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.perf_counter() + seconds
    counts = {"requests": 0, "errors": 0}

    async def worker() -> None:
        conn = await Connection(url).open()
        try:
            while time.perf_counter() < deadline:
                status, _ = await conn.request("GET", path)
                counts["requests"] += 1
                counts["errors"] += status != 200
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {**counts, "seconds": round(elapsed, 2), "rps": round(counts["requests"] / elapsed, 1)}


def measure(url: str, seconds: int = SECONDS, connections: int = CONNECTIONS) -> dict[str, Any]:
    """Requests per second that ``connections`` clients get from ``url`` over ``seconds``."""
    if shutil.which("wrk"):
        return {**_wrk(url, seconds, connections), "connections": connections}
    out = subprocess.run(
        [sys.executable, "-m", "bench.load", url, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {"tool": "asyncio client", **json.loads(out), "connections": connections}


if __name__ == "__main__":
    target, secs, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(_client(target, secs, conns))))
