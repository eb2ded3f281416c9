"""A known history written straight into a test daemon's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from ulid import ULID

from adapters.postgres.embedded import run_coroutine

REASONS = ["success", "success", "failed", "timeout", "success", "crashed", "stopped"]


def history_rows(task: str, count: int, start: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` ended runs of ``task``, a minute apart, the i-th lasting i seconds, their
    end reasons cycling through :data:`REASONS` (newest last)."""
    base = start or datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        created = base + timedelta(minutes=i)
        reason = REASONS[i % len(REASONS)]
        rows.append(
            {
                "id": str(ULID.from_datetime(created)),
                "task_name": task,
                "status": "ended",
                "end_reason": reason,
                "exit_code": 0 if reason == "success" else 1,
                "start_at": created,
                "end_at": created + timedelta(seconds=i),
                "created_at": created,
                "triggered_by": "api",
                "replica_index": 0,
                "retry_attempt": 0,
            }
        )
    return rows


def insert_runs(url: str, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` into the ``runs`` table of the database at ``url``."""
    columns = list(rows[0])

    async def insert() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.executemany(
                f"INSERT INTO runs ({', '.join(columns)}) "
                f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
                [tuple(row[c] for c in columns) for row in rows],
            )
        finally:
            await connection.close()

    run_coroutine(insert)
