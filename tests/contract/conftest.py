"""Fixtures that give every contract test each implementation of a storage port."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from ulid import ULID

from adapters.memory import InMemoryLogStore, InMemoryRunRepository
from adapters.postgres.database import async_url
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.runs import PostgresRunRepository
from domain.ports import LogStore, RunRepository
from domain.run import Run, TriggeredBy

_ids = itertools.count(1)

CROWD = 25
"""Connections for the tests that race many transactions against one another."""


def new_id(at: datetime | None = None) -> str:
    """A fresh ULID; time-ordered like the daemon's, unique within the session."""
    when = at or datetime(2026, 1, 1, tzinfo=UTC)
    return str(ULID.from_timestamp(when.timestamp() + next(_ids) / 1000))


@pytest.fixture(params=["memory", "postgres"])
def repo(request: pytest.FixtureRequest) -> RunRepository:
    """Each RunRepository implementation, empty."""
    if request.param == "memory":
        return InMemoryRunRepository()
    return PostgresRunRepository(request.getfixturevalue("engine"))


@pytest.fixture(params=["memory", "postgres"])
async def crowded_repo(request: pytest.FixtureRequest) -> AsyncIterator[RunRepository]:
    """Each RunRepository; on Postgres with enough connections for racing transactions."""
    if request.param == "memory":
        yield InMemoryRunRepository()
        return
    url = request.getfixturevalue("database_url")
    engine = create_async_engine(async_url(url), pool_size=CROWD, max_overflow=0)
    try:
        yield PostgresRunRepository(engine)
    finally:
        await engine.dispose()


@dataclass
class Storage:
    """A run repository and the log store whose logs go with its runs."""

    runs: RunRepository
    logs: LogStore


@pytest.fixture(params=["memory", "postgres"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each implementation's pair of stores, empty."""
    if request.param == "memory":
        logs = InMemoryLogStore()
        return Storage(InMemoryRunRepository(logs), logs)
    engine = request.getfixturevalue("engine")
    return Storage(PostgresRunRepository(engine), PostgresLogStore(engine))


@dataclass
class LogSubject:
    """A log store and a way to make a run whose log it may hold."""

    store: LogStore
    new_run: Callable[[], Awaitable[str]]


@pytest.fixture(params=["memory", "postgres"])
def logs(request: pytest.FixtureRequest) -> LogSubject:
    """Each LogStore implementation, empty."""
    if request.param == "memory":

        async def no_row() -> str:
            return new_id()

        return LogSubject(InMemoryLogStore(), no_row)

    engine = request.getfixturevalue("engine")
    runs = PostgresRunRepository(engine)

    async def stored_run() -> str:
        # Postgres keeps a log only for a recorded run (it goes when the run does).
        run = Run(new_id(), "logged", datetime(2026, 1, 1, tzinfo=UTC), TriggeredBy.API)
        await runs.add(run)
        return run.id

    return LogSubject(PostgresLogStore(engine), stored_run)
