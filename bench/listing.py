"""Listing benchmark: the query matrix over HTTP, each beside its plain SQL through asyncpg.

Every query of the matrix runs on both listings (``/api/tasks/big/runs`` and ``/api/runs``):
no params; each sort field both ways; four status filters; a search by a 4-character id
fragment and by a task-name fragment; offsets 1,000 to 500,000; limit 1000. Each is timed
over keep-alive HTTP on loopback (``BENCH_REQUESTS`` requests, default 50, after 5 warm-up
ones) and, as its SQL floor, the same statement the adapter sends (the page with its total;
the total alone too when the page is empty), through asyncpg with the same parameters
(only 10 times when one takes over 100 ms). The
HTTP floor is ``GET /schemas/Run.json``: a cached JSON document of the same server, no
database.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from adapters.postgres.listing import bound_values, prepared
from bench.history import BIG_TASK
from bench.http import Connection, summary, timed
from domain.listing import RunQuery, SortDirection, SortField, parse_status_filter

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))
FLOOR_PATH = "/schemas/Run.json"
SORTS = ("created_at", "start_at", "exit_code", "duration", "status", "task_name")
STATUSES = ("ended", "running", "failed", "success")
OFFSETS = (1000, 100_000, 500_000)
SLOW_SQL_MS = 100.0
SLOW_SQL_SAMPLES = 10


@dataclass(frozen=True)
class Case:
    """One query of the matrix on one listing, and the p99 target it must meet (if any)."""

    scope: str  # "task" or "all"
    name: str
    params: dict[str, str]
    target_ms: float | None

    @property
    def path(self) -> str:
        base = f"/api/tasks/{BIG_TASK}/runs" if self.scope == "task" else "/api/runs"
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"{base}?{query}" if query else base

    def run_query(self) -> RunQuery:
        """The domain query the daemon builds from these parameters."""
        p = self.params
        return RunQuery(
            task_name=BIG_TASK if self.scope == "task" else None,
            status=parse_status_filter(p.get("status")),
            search=p.get("search"),
            sort_field=SortField(p.get("sort_field", "")),
            sort_direction=SortDirection(p.get("sort_direction", "")),
            limit=int(p.get("limit", 50)),
            offset=int(p.get("offset", 0)),
        )


def matrix(id_fragment: str) -> list[Case]:
    """The issue's query matrix on both listings, with the targets that apply."""
    cases = []
    for scope in ("task", "all"):
        # On the task listing the name fragment is the task's own: every run matches.
        name_fragment = BIG_TASK if scope == "task" else "sync"
        entries: list[tuple[str, dict[str, str], float | None]] = [("default", {}, 10.0)]
        for field in SORTS:
            for direction in ("asc", "desc"):
                params = {"sort_field": field, "sort_direction": direction}
                entries.append((f"sort {field} {direction}", params, 10.0))
        entries += [(f"status {s}", {"status": s}, 10.0) for s in STATUSES]
        entries += [
            (f"search id '{id_fragment}'", {"search": id_fragment}, 25.0),
            (f"search name '{name_fragment}'", {"search": name_fragment}, 25.0),
        ]
        entries += [(f"offset {o:,}", {"offset": str(o)}, None) for o in OFFSETS]
        entries[-1] = (entries[-1][0], entries[-1][1], 100.0)  # offset 500,000
        entries.append(("limit 1000", {"limit": "1000"}, None))
        cases += [Case(scope, name, params, target) for name, params, target in entries]
    return cases


def sql_call(conn: asyncpg.Connection, case: Case) -> Callable[[], Any]:
    """A call running the statement(s) the adapter runs for ``case``, as it runs them."""
    query = case.run_query()
    values = bound_values(query)
    page, total = prepared(query), prepared(query, total_only=True)
    page_args, total_args = page.args(values), total.args(values)

    async def call() -> None:
        if not await conn.fetch(page.sql, *page_args):
            await conn.fetchval(total.sql, *total_args)

    return call


async def _timed_sql(call: Callable[[], Any]) -> list[float]:
    """The SQL floor: ``REQUESTS`` timings, or ``SLOW_SQL_SAMPLES`` for a statement slow
    enough (warm-up mean over ``SLOW_SQL_MS``) that it dominates its HTTP figure anyway."""
    warmup = await timed(call, 3, warmup=0)
    slow = sum(warmup) / len(warmup) > SLOW_SQL_MS
    return await timed(call, SLOW_SQL_SAMPLES if slow else REQUESTS, warmup=0)


async def id_fragment(conn: asyncpg.Connection) -> str:
    """4 characters from the random part of a run id of ``big`` (a pasted id piece)."""
    run_id = await conn.fetchval(
        "SELECT id FROM runs WHERE task_name = $1 ORDER BY created_at DESC LIMIT 1 OFFSET 1000",
        BIG_TASK,
    )
    return str(run_id)[-4:].lower()


async def run(daemon_url: str, database_url: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Time the whole matrix; returns ``{"floor": ..., "queries": [...]}``."""
    http = await Connection(daemon_url).open()
    conn = await asyncpg.connect(database_url)
    try:
        floor = summary(await timed(lambda: http.get(FLOOR_PATH), REQUESTS * 2))
        log(f"listing: HTTP floor {FLOOR_PATH}: p50 {floor['p50_ms']} p99 {floor['p99_ms']} ms")
        results = []
        for case in matrix(await id_fragment(conn)):
            body = msgspec.json.decode(await http.get(case.path))
            http_stats = summary(await timed(functools.partial(http.get, case.path), REQUESTS))
            sql_stats = summary(await _timed_sql(sql_call(conn, case)))
            entry = {
                "scope": case.scope,
                "query": case.name,
                "path": case.path,
                "rows": len(body["runs"]),
                "total": body["total"],
                **{k: http_stats[k] for k in ("p50_ms", "p99_ms", "mean_ms", "n")},
                "baseline_sql_p50_ms": sql_stats["p50_ms"],
                "baseline_sql_p99_ms": sql_stats["p99_ms"],
                "baseline_sql_n": sql_stats["n"],
                "baseline_http_p50_ms": floor["p50_ms"],
                "baseline_http_p99_ms": floor["p99_ms"],
                "target_p99_ms": case.target_ms,
                "met": None if case.target_ms is None else http_stats["p99_ms"] <= case.target_ms,
            }
            results.append(entry)
            log(
                f"listing: {case.scope:4} {case.name:28} p50 {entry['p50_ms']:8.2f}"
                f" p99 {entry['p99_ms']:8.2f} ms   sql p50 {entry['baseline_sql_p50_ms']:8.2f}"
                f"   total {entry['total']:,}"
            )
        return {"floor": floor, "queries": results}
    finally:
        await http.close()
        await conn.close()
