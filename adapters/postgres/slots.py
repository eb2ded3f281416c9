"""Service instance slots on PostgreSQL: one row per (service, replica_index).

A node holds a slot by writing its id into it (``FOR UPDATE SKIP LOCKED``, so claimers
never wait for each other or get the same slot), and inserts an instance's run only while
it holds the slot and is up (``record_instance``): a node that was reaped cannot start a
second instance beside the survivor's. Stop and restart are commands with a generation
number; each holder acknowledges the generation it carried out.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.cluster import CONTROL_CHANNEL
from adapters.postgres.database import autocommit, transaction
from adapters.postgres.rows import to_row
from adapters.postgres.tables import RUN_COLUMNS
from domain.ports import SlotLedger, SlotRecord, SlotState
from domain.run import Run

_SLOT_COLUMNS = (
    "s.service, s.replica_index, s.node_id, s.state, s.generation, s.acked_generation, "
    "CASE WHEN s.node_id IS NULL THEN extract(epoch FROM now() - s.freed_at) ELSE 0 END "
    "AS free_for"
)
_ADD = sa.text(
    """
    INSERT INTO service_slots (service, replica_index)
    SELECT t.service, i FROM unnest(CAST(:names AS text[]), CAST(:counts AS integer[]))
                              AS t (service, n),
                         generate_series(0, t.n - 1) AS i
    ON CONFLICT DO NOTHING
    """
)
_REMOVE_SURPLUS = sa.text(
    """
    DELETE FROM service_slots s
     USING unnest(CAST(:names AS text[]), CAST(:counts AS integer[])) AS t (service, n)
     WHERE s.service = t.service AND s.replica_index >= t.n AND s.node_id IS NULL
    """
)
_SLOTS = sa.text(
    f"SELECT {_SLOT_COLUMNS} FROM service_slots s WHERE s.service = ANY (:services) "
    "ORDER BY s.service, s.replica_index"
)
_CLAIM = sa.text(
    f"""
    UPDATE service_slots s SET node_id = :me, acked_generation = s.generation
     WHERE (s.service, s.replica_index) IN (
            SELECT f.service, f.replica_index FROM service_slots f
             WHERE f.service = :service AND f.node_id IS NULL AND f.state = 'wanted'
             ORDER BY f.replica_index LIMIT :count
               FOR UPDATE SKIP LOCKED)
       AND s.node_id IS NULL
       AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = :me AND n.state = 'up')
    RETURNING {_SLOT_COLUMNS}
    """
)
_COLUMN_NAMES = ", ".join(c.name for c in RUN_COLUMNS)
_RECORD_INSTANCE = sa.text(
    f"""
    INSERT INTO runs ({_COLUMN_NAMES})
    SELECT {_COLUMN_NAMES} FROM jsonb_populate_record(NULL::runs, CAST(:run AS jsonb))
     WHERE EXISTS (
        SELECT 1 FROM service_slots s JOIN nodes n ON n.id = s.node_id
         WHERE s.service = :service AND s.replica_index = :index
           AND s.node_id = :node AND s.state = 'wanted' AND n.state = 'up')
    """
)
_SETTLE = sa.text(
    """
    UPDATE service_slots
       SET acked_generation = greatest(acked_generation, :generation),
           state = coalesce(:state, state),
           node_id = CASE WHEN :release THEN NULL ELSE node_id END,
           freed_at = CASE WHEN :release THEN now() ELSE freed_at END
     WHERE service = :service AND replica_index = :index AND node_id = :me
    """
)
_COMMAND = sa.text(
    """
    UPDATE service_slots
       SET generation = generation + 1, state = :state,
           acked_generation = CASE WHEN node_id IS NULL THEN generation + 1
                                   ELSE acked_generation END
     WHERE service = :service
    RETURNING generation
    """
)
_NOTIFY_SLOTS = sa.text("SELECT pg_notify(:channel, :payload)")
_SETTLED = sa.text(
    "SELECT coalesce(bool_and(acked_generation >= :generation), true) "
    "FROM service_slots WHERE service = :service"
)


def _slot(row: RowMapping) -> SlotRecord:
    return SlotRecord(
        service=row["service"],
        index=int(row["replica_index"]),
        node_id=None if row["node_id"] is None else str(row["node_id"]),
        state=SlotState(row["state"]),
        generation=int(row["generation"]),
        acked_generation=int(row["acked_generation"]),
        free_for=float(row["free_for"]),
    )


def _slots_payload(service: str) -> dict[str, str]:
    body = msgspec.json.encode({"op": "slots", "service": service}).decode()
    return {"channel": CONTROL_CHANNEL, "payload": body}


class PostgresSlots(SlotLedger):
    """Slots in ``service_slots``; every method one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def sync(self, services: Mapping[str, int]) -> None:
        """Slots ``0 .. n-1`` for each service; unheld slots beyond that removed."""
        if not services:
            return
        params = {"names": list(services), "counts": list(services.values())}
        async with transaction(self._engine) as conn:
            await conn.execute(_ADD, params)
            await conn.execute(_REMOVE_SURPLUS, params)

    async def slots(self, services: Collection[str]) -> builtins.list[SlotRecord]:
        """The slots of ``services``, by service and index."""
        if not services:
            return []
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(_SLOTS, {"services": list(services)})).mappings().all()
        return [_slot(row) for row in rows]

    async def claim(self, me: str, service: str, count: int) -> builtins.list[SlotRecord]:
        """Hold up to ``count`` free wanted slots of ``service``, lowest index first."""
        if count <= 0:
            return []
        params = {"me": me, "service": service, "count": count}
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(_CLAIM, params)).mappings().all()
        return sorted((_slot(row) for row in rows), key=lambda s: s.index)

    async def record_instance(self, run: Run) -> bool:
        """Insert an instance's pending run while its node holds the slot."""
        params = {
            "run": msgspec.json.encode(to_row(run)).decode(),
            "service": run.task_name,
            "index": run.replica_index,
            "node": run.node_id,
        }
        async with autocommit(self._engine) as conn:
            result = await conn.execute(_RECORD_INSTANCE, params)
        return result.rowcount == 1

    async def settle(
        self,
        me: str,
        service: str,
        index: int,
        *,
        generation: int,
        state: SlotState | None = None,
        release: bool = False,
    ) -> bool:
        """Acknowledge ``generation`` on a held slot, maybe change its state or let go."""
        params = {
            "me": me,
            "service": service,
            "index": index,
            "generation": generation,
            "state": state.value if state is not None else None,
            "release": release,
        }
        async with transaction(self._engine) as conn:
            changed = (await conn.execute(_SETTLE, params)).rowcount == 1
            if changed and release:
                await conn.execute(_NOTIFY_SLOTS, _slots_payload(service))
        return changed

    async def command(self, service: str, *, stop: bool) -> int:
        """Stop or restart every slot of ``service``; the command's generation."""
        state = SlotState.STOPPED if stop else SlotState.WANTED
        async with transaction(self._engine) as conn:
            found = (await conn.execute(_COMMAND, {"service": service, "state": state.value})).all()
            await conn.execute(_NOTIFY_SLOTS, _slots_payload(service))
        return max((int(row[0]) for row in found), default=0)

    async def settled(self, service: str, generation: int) -> bool:
        """Whether every slot of ``service`` acknowledged ``generation``."""
        params = {"service": service, "generation": generation}
        async with autocommit(self._engine) as conn:
            return bool((await conn.execute(_SETTLED, params)).scalar_one())
