"""Dashboard pages benchmark: each page's server time on the seeded history.

The daemon serves every seeded task (``big`` and the 50 others, ``run = "true"``, no
schedule), so the tasks page lists 51 rows with their last 20 outcomes, the overview finds
what needs attention among them and the task page of ``big`` draws 50 bars over a million
runs. Each page is timed over keep-alive HTTP on loopback (``BENCH_REQUESTS`` requests,
after 5 warm-up ones): loopback adds well under a millisecond, so this is the server's time.
Target: every page's p99 within 50 ms (issue 11); a page at offset 500,000 inherits the
listing's own deep-offset target (100 ms: PostgreSQL walks the skipped rows, ~50 ms alone).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.history import BIG_TASK
from bench.http import Connection, summary, timed

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))
TARGET_MS = 50.0
DEEP_OFFSET_TARGET_MS = 100.0

PAGES: list[tuple[str, str]] = [
    ("overview", "/ui/"),
    ("tasks (51 rows, last 20 outcomes each)", "/ui/tasks"),
    ("tasks, state attention", "/ui/tasks?state=attention"),
    (f"task `{BIG_TASK}`", f"/ui/tasks/{BIG_TASK}"),
    (f"task `{BIG_TASK}`, status failed", f"/ui/tasks/{BIG_TASK}?status=failed"),
    (
        f"task `{BIG_TASK}`, by duration asc",
        f"/ui/tasks/{BIG_TASK}?sort_field=duration&sort_direction=asc",
    ),
    (f"task `{BIG_TASK}`, offset 500,000", f"/ui/tasks/{BIG_TASK}?offset=500000"),
    ("runs", "/ui/runs"),
    ("runs, status failed", "/ui/runs?status=failed"),
    ("runs, search `sync`", "/ui/runs?search=sync"),
    ("runs, 200 per page", "/ui/runs?limit=200"),
    ("nodes", "/ui/nodes"),
    ("notifications", "/ui/notifications"),
]


async def seeded_tasks(database_url: str) -> list[str]:
    """The names of the seeded history's tasks, from the listing's counters (no scan)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT DISTINCT task_name FROM run_counts ORDER BY 1")
    finally:
        await conn.close()
    return [str(r["task_name"]) for r in rows if not str(r["task_name"]).startswith("bench-")]


def config(task_names: list[str]) -> str:
    """A config serving the seeded tasks, none of them scheduled."""
    return '[scheduler]\ntimezone = "UTC"\n' + "".join(
        f'\n[tasks."{name}"]\nrun = "true"\n' for name in task_names
    )


async def run(daemon_url: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Time every page; returns ``{"pages": [...]}``."""
    http = await Connection(daemon_url).open()
    try:
        results = []
        for name, path in PAGES:
            body = await http.get(path)
            stats = summary(await timed(functools.partial(http.get, path), REQUESTS))
            target = DEEP_OFFSET_TARGET_MS if "offset=500000" in path else TARGET_MS
            entry = {
                "page": name,
                "path": path,
                "bytes": len(body),
                **stats,
                "target_p99_ms": target,
                "met": stats["p99_ms"] <= target,
            }
            results.append(entry)
            log(
                f"pages: {name:42} p50 {stats['p50_ms']:7.2f} p99 {stats['p99_ms']:7.2f} ms"
                f"   {len(body):,} bytes"
            )
        return {"pages": results}
    finally:
        await http.close()
