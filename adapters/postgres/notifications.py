"""The notification outbox on PostgreSQL (migration 0009).

Run ends write their events in the trigger ``runs_outbox``, inside the transaction that
records the end; this adapter writes the routing, emits the events no run end causes,
claims due deliveries (``FOR UPDATE SKIP LOCKED``, a lease on the server's ``now()``) and
records tries, fenced on the claimer and the attempt number.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import autocommit, transaction
from domain.notifications import INTERRUPTED, DeliveryStatus, Routing, Verdict, glob_regex
from domain.outbox import (
    Attempt,
    ChannelStats,
    Claimed,
    Delivery,
    DeliveryPage,
    DeliveryQuery,
    Outcome,
)
from domain.ports import NotificationOutbox

_DELIVERY = "d.*, e.data, e.count"
_CLAIM = sa.text(
    f"""
    WITH due AS (
        SELECT id FROM notify_deliveries
         WHERE status IN ('pending', 'retrying', 'sending') AND next_attempt_at <= now()
         ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE notify_deliveries d
           SET status = 'sending', claimed_by = :node, attempts = d.attempts + 1,
               next_attempt_at = now() + make_interval(secs => :lease)
          FROM due WHERE d.id = due.id
        RETURNING d.*, extract(epoch FROM now() - d.budget_from) AS age
    )
    SELECT {_DELIVERY} FROM claimed d JOIN notify_events e
        ON e.id = d.event_id ORDER BY d.next_attempt_at, d.id
    """
)
_FINISH = sa.text(
    """
    UPDATE notify_deliveries
       SET status = :status, claimed_by = NULL, last_attempt_at = now(),
           last_status_code = :code, last_error = :error,
           delivered_at = CASE WHEN :status = 'delivered' THEN now() END,
           next_attempt_at = CASE WHEN :status = 'retrying'
                                  THEN now() + make_interval(secs => :delay) END
     WHERE id = :id AND claimed_by = :node AND status = 'sending' AND attempts = :attempt
    """
)
_ATTEMPT = sa.text(
    "INSERT INTO notify_attempts (delivery_id, n, verdict, status_code, error, duration_ms, "
    "node_id) VALUES (:id, :attempt, :verdict, :code, :error, :ms, :node) "
    "ON CONFLICT DO NOTHING"
)
_RETRY = sa.text(
    "UPDATE notify_deliveries SET status = 'pending', next_attempt_at = now(), "
    "budget_from = now(), claimed_by = NULL WHERE id = :id AND status = 'dead'"
)
_EMIT = sa.text(
    "SELECT runwarden_notify_emit(:type, :task, :run, CAST(:data AS jsonb), "
    "CAST(:channels AS text[]), 'pending', :count, :dedupe)"
)
_STATS = sa.text(
    """
    SELECT channel,
           max(delivered_at) AS last_success_at,
           max(last_attempt_at) FILTER (WHERE status IN ('retrying', 'dead')) AS last_failure_at,
           count(*) FILTER (WHERE status IN ('pending', 'retrying', 'sending')) AS pending,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           (array_agg(last_error ORDER BY last_attempt_at DESC NULLS LAST)
               FILTER (WHERE status IN ('retrying', 'dead')))[1] AS last_error
      FROM notify_deliveries GROUP BY channel
    """
)
_RELEASE = sa.text(
    """
    WITH released AS (
        UPDATE notify_deliveries
           SET status = 'retrying', next_attempt_at = now(), claimed_by = NULL,
               last_attempt_at = now(), last_error = :error, last_status_code = NULL
         WHERE claimed_by = :node AND status = 'sending'
        RETURNING id, attempts
    )
    INSERT INTO notify_attempts (delivery_id, n, verdict, error, node_id)
    SELECT id, attempts, 'retry', :error, :node FROM released
    ON CONFLICT DO NOTHING
    """
)
_PRUNE = sa.text(
    """
    DELETE FROM notify_events WHERE id IN (
        SELECT e.id FROM notify_events e
         WHERE e.created_at < :before
           AND NOT EXISTS (SELECT 1 FROM notify_deliveries d WHERE d.event_id = e.id
                            AND d.status IN ('pending', 'retrying', 'sending'))
         ORDER BY e.created_at LIMIT :batch)
    """
)
_CHANNELS_OF = sa.text("SELECT runwarden_notify_channels(:task, :event)")
_IS_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _uuid_like(text: str) -> bool:
    """Ids are UUIDs: anything else is unknown (not a database error)."""
    return _IS_UUID.match(text) is not None


def _delivery(row: RowMapping) -> Delivery:
    data = row["data"]
    return Delivery(
        id=str(row["id"]),
        event_id=str(row["event_id"]),
        type=row["type"],
        channel=row["channel"],
        status=DeliveryStatus(row["status"]),
        created_at=row["created_at"],
        task_name=row["task_name"],
        run_id=row["run_id"],
        data=data if isinstance(data, dict) else json.loads(data),
        count=row["count"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
    )


class PostgresOutbox(NotificationOutbox):
    """The outbox in the database every node shares."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def configure(self, routing: Routing) -> None:
        """Replace the routing in one transaction (racing nodes: the last one wins)."""
        channels = [
            {"name": c.name, "on": sorted(c.on), "re": [glob_regex(p) for p in c.tasks]}
            for c in routing.channels
        ]
        names = set(routing.task_channels) | set(routing.warn_after)
        tasks = [
            {
                "task": name,
                "channels": list(routing.task_channels[name])
                if name in routing.task_channels
                else None,
                "warn": routing.warn_after.get(name),
            }
            for name in sorted(names)
        ]
        async with transaction(self._engine) as conn:
            # One writer at a time: two nodes starting together do not interleave.
            await conn.execute(sa.text("LOCK TABLE notify_channels IN EXCLUSIVE MODE"))
            await conn.execute(sa.text("DELETE FROM notify_channels"))
            await conn.execute(sa.text("DELETE FROM notify_tasks"))
            if channels:
                await conn.execute(
                    sa.text(
                        "INSERT INTO notify_channels (name, on_events, task_regexes) "
                        "VALUES (:name, :on, :re)"
                    ),
                    channels,
                )
            if tasks:
                await conn.execute(
                    sa.text(
                        "INSERT INTO notify_tasks (task_name, channels, warn_after) VALUES "
                        "(:task, :channels, make_interval(secs => CAST(:warn AS float8)))"
                    ),
                    tasks,
                )
            await conn.execute(
                sa.text(
                    "INSERT INTO notify_settings (id, coalesce_window) "
                    "VALUES (true, make_interval(secs => :w)) "
                    "ON CONFLICT (id) DO UPDATE SET coalesce_window = excluded.coalesce_window"
                ),
                {"w": routing.coalesce_window},
            )

    async def emit(
        self,
        type: str,
        task_name: str | None,
        run_id: str | None,
        data: Mapping[str, Any],
        *,
        only_channel: str | None = None,
        dedupe_key: str | None = None,
        count: int = 1,
    ) -> Sequence[str] | None:
        async with transaction(self._engine) as conn:
            if only_channel is not None:
                channels = [only_channel]
            else:
                found = await conn.execute(_CHANNELS_OF, {"task": task_name or "", "event": type})
                channels = list(found.scalar_one())
            if dedupe_key is not None:
                seen = await conn.execute(
                    sa.text("SELECT 1 FROM notify_events WHERE dedupe_key = :k"), {"k": dedupe_key}
                )
                if seen.first() is not None:
                    return None
            result = await conn.execute(
                _EMIT,
                {
                    "type": type,
                    "task": task_name,
                    "run": run_id,
                    "data": json.dumps(dict(data)),
                    "channels": channels,
                    "count": count,
                    "dedupe": dedupe_key,
                },
            )
            event = result.scalar_one()
            if event is None:
                return None  # recorded meanwhile by another node
            ids = await conn.execute(
                sa.text("SELECT id FROM notify_deliveries WHERE event_id = :e ORDER BY seq"),
                {"e": event},
            )
            return [str(row[0]) for row in ids]

    async def emit_long_running(self) -> int:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(sa.text("SELECT runwarden_notify_long_running()"))
            return int(result.scalar_one())

    async def flush(self) -> int:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(sa.text("SELECT runwarden_notify_flush()"))
            return int(result.scalar_one())

    async def claim(self, node: str, limit: int, lease: float) -> Sequence[Claimed]:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(_CLAIM, {"node": node, "limit": limit, "lease": lease})
            return [
                Claimed(_delivery(row), row["attempts"], float(row["age"]))
                for row in result.mappings()
            ]

    async def finish(self, delivery_id: str, node: str, attempt: int, outcome: Outcome) -> bool:
        status = {
            Verdict.DELIVERED: DeliveryStatus.DELIVERED,
            Verdict.RETRY: DeliveryStatus.RETRYING,
            Verdict.DEAD: DeliveryStatus.DEAD,
        }[outcome.verdict]
        values = {
            "id": delivery_id,
            "node": node,
            "attempt": attempt,
            "status": status.value,
            "code": outcome.status_code,
            "error": outcome.error,
            "delay": outcome.delay,
            "verdict": outcome.verdict.value,
            "ms": outcome.duration_ms,
        }
        async with transaction(self._engine) as conn:
            await conn.execute(_ATTEMPT, values)
            result = await conn.execute(_FINISH, values)
            return result.rowcount == 1

    async def retry(self, delivery_id: str) -> bool:
        if not _uuid_like(delivery_id):
            return False
        async with autocommit(self._engine) as conn:
            return (await conn.execute(_RETRY, {"id": delivery_id})).rowcount == 1

    async def release(self, node: str) -> int:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(_RELEASE, {"node": node, "error": INTERRUPTED})
            return result.rowcount

    async def prune(self, before: datetime, batch: int) -> int:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(_PRUNE, {"before": before, "batch": batch})
            return result.rowcount

    async def get(self, delivery_id: str) -> Delivery | None:
        if not _uuid_like(delivery_id):
            return None
        async with autocommit(self._engine) as conn:
            result = await conn.execute(
                sa.text(
                    f"SELECT {_DELIVERY} FROM notify_deliveries d "
                    "JOIN notify_events e ON e.id = d.event_id WHERE d.id = :id"
                ),
                {"id": delivery_id},
            )
            row = result.mappings().first()
            return _delivery(row) if row is not None else None

    async def attempts(self, delivery_id: str) -> Sequence[Attempt]:
        if not _uuid_like(delivery_id):
            return []
        async with autocommit(self._engine) as conn:
            result = await conn.execute(
                sa.text("SELECT * FROM notify_attempts WHERE delivery_id = :id ORDER BY n"),
                {"id": delivery_id},
            )
            return [
                Attempt(
                    n=row["n"],
                    at=row["at"],
                    verdict=Verdict(row["verdict"]),
                    status_code=row["status_code"],
                    error=row["error"],
                    duration_ms=row["duration_ms"],
                )
                for row in result.mappings()
            ]

    async def stats(self) -> Sequence[ChannelStats]:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(_STATS)
            return [
                ChannelStats(
                    channel=row["channel"],
                    last_success_at=row["last_success_at"],
                    last_failure_at=row["last_failure_at"],
                    last_error=row["last_error"],
                    pending=row["pending"],
                    dead=row["dead"],
                )
                for row in result.mappings()
            ]

    async def count_for_run(self, run_id: str) -> int:
        async with autocommit(self._engine) as conn:
            result = await conn.execute(
                sa.text("SELECT count(*) FROM notify_deliveries WHERE run_id = :id"),
                {"id": run_id},
            )
            return int(result.scalar_one())

    async def list(self, query: DeliveryQuery) -> DeliveryPage:
        where = ["true"]
        values: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
        if query.status:
            where.append("d.status = ANY (:status)")
            values["status"] = [s.value for s in query.status]
        for column, value in (
            ("channel", query.channel),
            ("task_name", query.task_name),
            ("run_id", query.run_id),
        ):
            if value is not None:
                where.append(f"d.{column} = :{column}")
                values[column] = value
        condition = " AND ".join(where)
        async with autocommit(self._engine) as conn:
            total = await conn.execute(
                sa.text(f"SELECT count(*) FROM notify_deliveries d WHERE {condition}"), values
            )
            rows = await conn.execute(
                sa.text(
                    f"SELECT {_DELIVERY} FROM notify_deliveries d "
                    f"JOIN notify_events e ON e.id = d.event_id WHERE {condition} "
                    "ORDER BY d.seq DESC LIMIT :limit OFFSET :offset"
                ),
                values,
            )
            found: builtins.list[Delivery] = [_delivery(row) for row in rows.mappings()]
            return DeliveryPage(found, int(total.scalar_one()))
