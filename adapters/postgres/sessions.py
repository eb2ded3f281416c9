"""Dashboard login sessions on PostgreSQL (migration 0010), judged on the database's clock.

Every node reads the same rows, so a session opened on one node is accepted by all and a
logout ends it everywhere.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import autocommit, transaction
from adapters.postgres.tables import ui_sessions
from domain.ports import SessionStore

_NOW = sa.func.now()
_EXPIRED = ui_sessions.c.expires_at <= _NOW


class PostgresSessionStore(SessionStore):
    """The ``ui_sessions`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, key: bytes, token: bytes, ttl: float) -> None:
        """Record a session living ``ttl`` seconds; drop the expired ones (one transaction)."""
        insert = pg.insert(ui_sessions).values(
            key=key,
            token_digest=token,
            created_at=_NOW,
            expires_at=_NOW + sa.literal(timedelta(seconds=ttl), pg.INTERVAL),
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[ui_sessions.c.key],
            set_={
                "token_digest": insert.excluded.token_digest,
                "created_at": insert.excluded.created_at,
                "expires_at": insert.excluded.expires_at,
            },
        )
        async with transaction(self.engine) as conn:
            await conn.execute(sa.delete(ui_sessions).where(_EXPIRED))
            await conn.execute(upsert)

    async def token_of(self, key: bytes) -> bytes | None:
        """The token digest of a live session, else None."""
        query = sa.select(ui_sessions.c.token_digest).where(
            ui_sessions.c.key == key, ui_sessions.c.expires_at > _NOW
        )
        async with autocommit(self.engine) as conn:
            digest = await conn.scalar(query)
        return bytes(digest) if digest is not None else None

    async def delete(self, key: bytes) -> bool:
        """End the session; whether there was one."""
        async with autocommit(self.engine) as conn:
            result = await conn.execute(sa.delete(ui_sessions).where(ui_sessions.c.key == key))
        return bool(result.rowcount)

    async def purge_expired(self) -> int:
        """Remove sessions whose time is up; how many."""
        async with autocommit(self.engine) as conn:
            result = await conn.execute(sa.delete(ui_sessions).where(_EXPIRED))
        return int(result.rowcount)
