"""Fill a database with a synthetic history: ``python -m bench.seed --runs N --task-runs M``.

The schema is the project's own (the migrations run first). Rows go in with ``COPY`` inside
one transaction with triggers off (``session_replication_role = replica``), so neither the
per-statement counter trigger nor notifications fire; the listing's counters
(``run_counts``) are then rebuilt with one ``GROUP BY``. The secondary indexes are dropped
before the copy and rebuilt after it, two at a time (building them is faster than
maintaining 20 indexes, two of them trigram GIN, row by row). ``VACUUM ANALYZE`` last: the
planner needs statistics and index-only scans need the visibility map.

A seeded database records what it holds in ``bench_meta``; ``ensure_seeded`` reuses it when
the counts match, so a rerun of the benchmarks does not reload two million rows.
``bench_active`` remembers the runs seeded ``running``/``pending``: a daemon start settles
those (crashed, skipped), and :func:`restore_active` puts them back once it has started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from adapters.postgres.database import migrate_async
from bench.history import COLUMNS, generate

SEED_VERSION = 2
MAINTENANCE_MEMORY = "512MB"

_META = """
CREATE TABLE IF NOT EXISTS bench_meta (
    seed_version integer NOT NULL,
    runs bigint NOT NULL,
    task_runs bigint NOT NULL,
    seconds double precision NOT NULL,
    seeded_at timestamptz NOT NULL DEFAULT now()
)
"""
_ACTIVE = """
CREATE TABLE IF NOT EXISTS bench_active (
    id text COLLATE "C" PRIMARY KEY,
    status text NOT NULL,
    start_at timestamptz
)
"""
# Indexes that back constraints stay (the copy must still check them); the rest are rebuilt.
_DROPPABLE = """
SELECT i.relname, pg_get_indexdef(i.oid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'runs'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
"""
_INDEXES = """
CREATE TABLE IF NOT EXISTS bench_indexes (name text PRIMARY KEY, definition text NOT NULL)
"""
_TRUNCATE = "TRUNCATE runs, run_counts, task_ticks, bench_meta, bench_active CASCADE"
_RECOUNT = """
INSERT INTO run_counts (task_name, status, end_reason, n)
SELECT task_name, status, coalesce(end_reason, ''), count(*) FROM runs GROUP BY 1, 2, 3
"""


async def seeded_counts(conn: asyncpg.Connection) -> tuple[int, int] | None:
    """``(runs, task_runs)`` of the current seed, or None if there is none or it was altered."""
    if await conn.fetchval("SELECT to_regclass('bench_meta')") is None:
        return None
    meta = await conn.fetchrow("SELECT seed_version, runs, task_runs FROM bench_meta")
    if meta is None or meta["seed_version"] != SEED_VERSION:
        return None
    # Runs of the benchmarks' own tasks (bench-*) come and go; the seeded ones must not.
    stored = await conn.fetchval(
        "SELECT coalesce(sum(n), 0) FROM run_counts WHERE task_name NOT LIKE 'bench-%'"
    )
    if stored != meta["runs"]:
        return None
    return int(meta["runs"]), int(meta["task_runs"])


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the secondary indexes of ``runs``; returns their definitions.

    The definitions are kept in ``bench_indexes`` in the same transaction as the drop, so a
    seed interrupted before the rebuild is repaired by the next one.
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT count(*) FROM bench_indexes"):
            await conn.executemany(
                "INSERT INTO bench_indexes (name, definition) VALUES ($1, $2)",
                await conn.fetch(_DROPPABLE),
            )
        rows = await conn.fetch("SELECT name, definition FROM bench_indexes ORDER BY name")
        for row in rows:
            await conn.execute(f'DROP INDEX IF EXISTS "{row["name"]}"')
    return [row["definition"] for row in rows]


async def _build_indexes(url: str, definitions: list[str]) -> None:
    """Build the indexes on two connections: the trigram GIN on ``id`` alone takes half."""
    slow = [d for d in definitions if "gin" in d.lower()]
    fast = [d for d in definitions if d not in slow]

    async def build(batch: list[str]) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_MEMORY}'")
            for definition in batch:
                await conn.execute(definition)
        finally:
            await conn.close()

    await asyncio.gather(build(slow), build(fast))


async def seed(url: str, runs: int, task_runs: int) -> dict[str, float]:
    """Replace every run with ``runs`` synthetic ones; returns seconds per phase and in all."""
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = round(time.perf_counter() - started - sum(phases.values()), 2)

    conn = await asyncpg.connect(url)
    try:
        for statement in (_META, _ACTIVE, _INDEXES):
            await conn.execute(statement)
        await conn.execute(_TRUNCATE)
        definitions = await _drop_indexes(conn)
        active: list[tuple[Any, ...]] = []
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for batch in generate(runs, task_runs):
                await conn.copy_records_to_table("runs", records=batch, columns=COLUMNS)
                active.extend((r[0], r[2], r[5]) for r in batch if r[2] != "ended")
        lap("copy")
        await _build_indexes(url, definitions)
        lap("indexes")
        async with conn.transaction():
            await conn.execute("DELETE FROM bench_indexes")
            await conn.execute(_RECOUNT)
            await conn.copy_records_to_table("bench_active", records=active)
            await conn.execute(
                "INSERT INTO bench_meta (seed_version, runs, task_runs, seconds)"
                " VALUES ($1, $2, $3, $4)",
                SEED_VERSION,
                runs,
                task_runs,
                time.perf_counter() - started,
            )
        lap("counts")
        await conn.execute("VACUUM ANALYZE runs")
        await conn.execute("VACUUM ANALYZE run_counts")
        lap("vacuum")
    finally:
        await conn.close()
    phases["total"] = round(time.perf_counter() - started, 2)
    return phases


async def restore_active(conn: asyncpg.Connection) -> int:
    """Put the seeded running/pending runs back as they were; returns how many changed.

    Triggers stay on, so ``run_counts`` follows the change.
    """
    if await conn.fetchval("SELECT to_regclass('bench_active')") is None:
        return 0
    result = await conn.execute(
        """
        UPDATE runs r
        SET status = a.status, end_reason = NULL, exit_code = 0, end_at = NULL,
            start_at = a.start_at
        FROM bench_active a
        WHERE r.id = a.id AND r.status IS DISTINCT FROM a.status
        """
    )
    return int(result.split()[-1])


async def ensure_seeded(
    url: str,
    runs: int,
    task_runs: int,
    fresh: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Migrate, then seed unless the database already holds this history."""
    await migrate_async(url)
    conn = await asyncpg.connect(url)
    try:
        if not fresh and await seeded_counts(conn) == (runs, task_runs):
            log(f"seed: reusing {runs:,} runs ({task_runs:,} in 'big')")
            return {"runs": runs, "task_runs": task_runs, "reused": True}
        log(f"seed: loading {runs:,} runs ({task_runs:,} in 'big') ...")
        phases = await seed(url, runs, task_runs)
        log(f"seed: {runs:,} runs in {phases['total']:.1f} s ({phases})")
        return {"runs": runs, "task_runs": task_runs, "reused": False, "seconds": phases}
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """The ``python -m bench.seed`` command."""
    from bench.env import bench_database_url

    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__)
    parser.add_argument("--runs", type=int, default=2_000_000, help="runs in all")
    parser.add_argument("--task-runs", type=int, default=1_000_000, help="runs of task 'big'")
    parser.add_argument("--fresh", action="store_true", help="reload even if already seeded")
    parser.add_argument("--database-url", help="default: BENCH_DATABASE_URL or a local server")
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        url = args.database_url or await bench_database_url()
        return await ensure_seeded(url, args.runs, args.task_runs, args.fresh)

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
