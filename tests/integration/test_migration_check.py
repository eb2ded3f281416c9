"""The daemon's start skips Alembic (and its memory) when the schema is already current."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from adapters.postgres.database import (
    _alembic_config,
    current_revision,
    head_revision,
    migrate_async,
    with_database,
)
from adapters.postgres.embedded import run_coroutine


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(name="empty_url")
def empty_url_fixture(pg_server_url: str) -> Iterator[str]:
    """A database with no schema at all."""
    name = f"runwarden_empty_{uuid.uuid4().hex[:12]}"
    run_coroutine(lambda: _admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(pg_server_url, name)
    finally:
        run_coroutine(
            lambda: _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


def test_the_head_read_from_the_files_is_alembics() -> None:
    script = ScriptDirectory.from_config(_alembic_config("postgresql://unused/x"))
    assert head_revision() == script.get_current_head()


def test_a_current_schema_is_not_migrated_and_alembic_not_imported(database_url: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from adapters.postgres.database import migrate_async\n"
        f"asyncio.run(migrate_async({database_url!r}))\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_an_empty_database_is_migrated_to_the_head(empty_url: str) -> None:
    assert await current_revision(empty_url) is None
    await migrate_async(empty_url)
    assert await current_revision(empty_url) == head_revision()


async def test_an_older_schema_is_upgraded(database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, _alembic_config(database_url), "0008")
    assert await current_revision(database_url) == "0008"
    await migrate_async(database_url)
    assert await current_revision(database_url) == head_revision()
