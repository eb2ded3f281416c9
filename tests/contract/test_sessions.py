"""The SessionStore contract, against the in-memory fake and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from adapters.memory_sessions import InMemorySessionStore
from adapters.postgres.sessions import PostgresSessionStore
from domain.ports import SessionStore

TOKEN = hashlib.sha256(b"rw_token").digest()
OTHER_TOKEN = hashlib.sha256(b"rw_other").digest()


def key() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> SessionStore:
    """Each SessionStore implementation, empty."""
    if request.param == "memory":
        return InMemorySessionStore()
    return PostgresSessionStore(request.getfixturevalue("engine"))


async def test_a_created_session_names_its_token_until_deleted(store: SessionStore) -> None:
    mine, yours = key(), key()
    await store.create(mine, TOKEN, 60)
    await store.create(yours, OTHER_TOKEN, 60)
    assert await store.token_of(mine) == TOKEN
    assert await store.token_of(yours) == OTHER_TOKEN
    assert await store.delete(mine) is True
    assert await store.token_of(mine) is None
    assert await store.delete(mine) is False
    assert await store.token_of(yours) == OTHER_TOKEN


async def test_an_unknown_key_has_no_token(store: SessionStore) -> None:
    assert await store.token_of(key()) is None
    assert await store.delete(key()) is False


async def test_a_session_dies_when_its_time_is_up(store: SessionStore) -> None:
    short, long = key(), key()
    await store.create(short, TOKEN, 0.05)
    await store.create(long, TOKEN, 60)
    await asyncio.sleep(0.1)
    assert await store.token_of(short) is None
    assert await store.token_of(long) == TOKEN


async def test_expired_sessions_are_purged_and_creating_one_purges_them(
    store: SessionStore,
) -> None:
    # Long enough that the second create does not find the first one expired already.
    for _ in range(2):
        await store.create(key(), TOKEN, 1.0)
    await asyncio.sleep(1.1)
    assert await store.purge_expired() == 2
    assert await store.purge_expired() == 0
    gone = key()
    await store.create(gone, TOKEN, 0.01)
    await asyncio.sleep(0.05)
    kept = key()
    await store.create(kept, TOKEN, 60)  # removes ``gone``'s row
    assert await store.purge_expired() == 0
    assert await store.token_of(kept) == TOKEN


async def test_creating_a_session_again_replaces_it(store: SessionStore) -> None:
    same = key()
    await store.create(same, TOKEN, 0.01)
    await store.create(same, OTHER_TOKEN, 60)
    await asyncio.sleep(0.05)
    assert await store.token_of(same) == OTHER_TOKEN
