"""The listing's statements are served by indexes, never by a sequential scan of ``runs``.

A module database is seeded with 200,000 runs by the benchmarks' own loader (100,000 in
task ``big``, the rest over 50 tasks), analysed, and every query shape of the benchmark
matrix is EXPLAINed exactly as the adapter builds it (page and total statements, with the
same bound parameters). The loader itself is checked too: ids are ULIDs of their
``created_at``, and the counters it rebuilds are what the trigger would have kept.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from ulid import ULID

from adapters.postgres.embedded import run_coroutine
from adapters.postgres.listing import page_query, total_query
from adapters.postgres.run_listing import NEWEST_SQL
from bench.history import BIG_TASK, ulid_randomness, ulid_time_part
from bench.seed import seed
from domain.listing import RunQuery, SortDirection, SortField, parse_status_filter

RUNS = 200_000
TASK_RUNS = 100_000
SORTS = ("created_at", "start_at", "exit_code", "duration", "status", "task_name")
STATUSES = ("ended", "running", "failed", "success", "failed,timeout")
OFFSETS = (0, 1000, 50_000)
_DIALECT = asyncpg_dialect.dialect()


def _shapes() -> list[tuple[str, RunQuery]]:
    shapes = []
    for task in (BIG_TASK, None):
        scope = "task" if task else "all"
        for field in SORTS:
            for direction in ("asc", "desc"):
                query = RunQuery(
                    task_name=task,
                    sort_field=SortField(field),
                    sort_direction=SortDirection(direction),
                )
                shapes.append((f"{scope}-sort-{field}-{direction}", query))
        for status in STATUSES:
            shapes.append(
                (f"{scope}-status-{status}", RunQuery(task, status=parse_status_filter(status)))
            )
        # On the task listing the name fragment is also the task's own: every run matches.
        needles = (("id", "x7k2"), ("name", "sync"), ("own-name", BIG_TASK))
        for name, needle in needles if task else needles[:2]:
            shapes.append((f"{scope}-search-{name}", RunQuery(task, search=needle)))
        for offset in OFFSETS[1:]:
            shapes.append((f"{scope}-offset-{offset}", RunQuery(task, offset=offset)))
        shapes.append((f"{scope}-limit-1000", RunQuery(task, limit=1000)))
        shapes.append((f"{scope}-default", RunQuery(task)))
    return shapes


SHAPES = _shapes()


async def _seed(url: str) -> None:
    await seed(url, RUNS, TASK_RUNS)


@pytest.fixture(scope="module")
def seeded_url(module_database_url: str) -> str:
    """The module database holding the seeded history, analysed."""
    run_coroutine(lambda: _seed(module_database_url))
    return module_database_url


def _compiled(select: Any) -> tuple[str, list[Any]]:
    compiled = select.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), [compiled.params[name] for name in compiled.positiontup]


def _scans_of_runs(plan: dict[str, Any]) -> list[str]:
    """Node types of every plan node that reads ``runs``."""
    found = [plan["Node Type"]] if plan.get("Relation Name") == "runs" else []
    for child in plan.get("Plans", []):
        found += _scans_of_runs(child)
    return found


async def _explain(url: str, select: Any) -> dict[str, Any]:
    sql, args = _compiled(select)
    conn = await asyncpg.connect(url)
    try:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    finally:
        await conn.close()
    return json.loads(raw)[0]["Plan"]


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "query"), SHAPES, ids=[name for name, _ in SHAPES])
def test_listing_statements_read_runs_through_an_index(
    seeded_url: str, shape: str, query: RunQuery
) -> None:
    for statement in (page_query(query), total_query(query)):
        plan = run_coroutine(lambda s=statement: _explain(seeded_url, s))
        scans = _scans_of_runs(plan)
        assert "Seq Scan" not in scans, f"{shape}: {json.dumps(plan, indent=1)[:4000]}"


@pytest.mark.slow
def test_seeded_ids_are_ulids_of_their_created_at(seeded_url: str) -> None:
    async def sample() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(seeded_url)
        try:
            return await conn.fetch("SELECT id, created_at FROM runs TABLESAMPLE SYSTEM (1)")
        finally:
            await conn.close()

    rows = run_coroutine(sample)
    assert rows
    for row in rows:
        parsed = ULID.from_str(row["id"])
        assert str(parsed) == row["id"]
        assert parsed.milliseconds == int(row["created_at"].timestamp() * 1000)


@pytest.mark.slow
def test_seed_rebuilds_the_counters_the_trigger_keeps(seeded_url: str) -> None:
    async def compare() -> tuple[set[tuple], set[tuple]]:
        conn = await asyncpg.connect(seeded_url)
        try:
            kept = await conn.fetch("SELECT task_name, status, end_reason, n FROM run_counts")
            counted = await conn.fetch(
                "SELECT task_name, status, coalesce(end_reason, ''), count(*) FROM runs"
                " GROUP BY 1, 2, 3"
            )
        finally:
            await conn.close()
        return {tuple(r) for r in kept}, {tuple(r) for r in counted}

    kept, counted = run_coroutine(compare)
    assert kept == counted
    assert sum(n for *_, n in kept) == RUNS
    assert sum(n for task, *_, n in kept if task == BIG_TASK) == TASK_RUNS


def test_ulid_parts_encode_milliseconds_and_randomness_in_crockford_base32() -> None:
    ms = 1_764_460_800_123
    tail = ulid_randomness(3)
    ids = [ulid_time_part(ms) + t for t in tail]
    assert len(set(tail)) == 3
    for value in ids:
        assert ULID.from_str(value).milliseconds == ms
        assert len(value) == 26


@pytest.mark.slow
@pytest.mark.parametrize("ended_only", [False, True], ids=["newest", "newest-ended"])
def test_every_tasks_newest_runs_are_index_probes(seeded_url: str, ended_only: bool) -> None:
    """The dashboard's strips and "needs attention": one backward index scan per task."""

    async def explain() -> dict[str, Any]:
        conn = await asyncpg.connect(seeded_url)
        try:
            names = [r[0] for r in await conn.fetch("SELECT DISTINCT task_name FROM run_counts")]
            sql = NEWEST_SQL[ended_only]
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", names, 20)
        finally:
            await conn.close()
        return dict(json.loads(raw)[0]["Plan"])

    plan = run_coroutine(explain)
    assert _scans_of_runs(plan) == ["Index Scan"], json.dumps(plan, indent=1)[:4000]
