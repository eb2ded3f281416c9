"""The listing's reads on the pool's driver connections: dead connections, no server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ulid import ULID

from adapters.postgres.database import async_url
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.run_listing import RunListing
from adapters.postgres.runs import PostgresRunRepository
from domain.errors import StoreUnavailable
from domain.listing import RunQuery
from domain.logs import LogBatch, LogSegment, LogStream
from domain.run import Run, TriggeredBy

POOL = 3


@pytest.fixture
async def named_engine(database_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine whose connections carry an application name of their own."""
    name = f"listing-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(
        async_url(database_url),
        pool_size=POOL,
        max_overflow=0,
        connect_args={"server_settings": {"application_name": name}},
    )
    try:
        yield engine, name
    finally:
        await engine.dispose()


async def _terminate(database_url: str, application_name: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await conn.close()
    return len(killed)


async def test_a_page_read_skips_pooled_connections_the_server_dropped(
    named_engine: tuple[AsyncEngine, str], database_url: str
) -> None:
    engine, name = named_engine
    repo = PostgresRunRepository(engine)
    run = Run(str(ULID()), "job", datetime(2026, 1, 1, tzinfo=UTC), TriggeredBy.API)
    await repo.add(run)
    listing = RunListing(engine)
    query = RunQuery(task_name="job")
    # Fill the pool: every connection is checked out at once, then returned.
    await asyncio.gather(*(listing.page(query) for _ in range(POOL)))
    assert await _terminate(database_url, name) >= 2
    await asyncio.sleep(0.2)  # the server closes them

    page = await listing.page(query)

    assert ([r.id for r in page.runs], page.total) == ([run.id], 1)


async def test_a_server_that_does_not_answer_is_store_unavailable() -> None:
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailable):
            await RunListing(engine).page(RunQuery())
    finally:
        await engine.dispose()


async def test_the_raw_log_read_skips_pooled_connections_the_server_dropped(
    named_engine: tuple[AsyncEngine, str], database_url: str
) -> None:
    engine, name = named_engine
    repo = PostgresRunRepository(engine)
    logs = PostgresLogStore(engine)
    run = Run(str(ULID()), "job", datetime(2026, 1, 1, tzinfo=UTC), TriggeredBy.API)
    await repo.add(run)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    await logs.append(run.id, LogBatch(0, [LogSegment.of(LogStream.STDOUT, at, ["a", "b"])]))

    async def raw() -> bytes:
        return b"".join([piece async for piece in logs.raw_text(run.id, 2)])

    # Fill the pool: every connection is checked out at once, then returned.
    assert await asyncio.gather(*(raw() for _ in range(POOL))) == [b"a\nb\n"] * POOL
    assert await _terminate(database_url, name) >= 2
    await asyncio.sleep(0.2)  # the server closes them

    assert await raw() == b"a\nb\n"
