"""A database per test module, for suites that share one daemon across their tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from adapters.postgres.database import with_database
from adapters.postgres.embedded import run_coroutine


async def execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def module_database_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """A fresh migrated database shared by one test module."""
    name = f"runwarden_mod_{uuid.uuid4().hex[:12]}"
    run_coroutine(
        lambda: execute(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    )
    try:
        yield with_database(pg_server_url, name)
    finally:
        run_coroutine(
            lambda: execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )
