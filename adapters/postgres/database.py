"""Engine, migrations and error translation: the edge between runwarden and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

import migrations
from domain.errors import StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a new connection before the store counts as unavailable."""
PING_TIMEOUT = 5.0

_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://")

# SQLSTATEs that mean "the server cannot serve us now", not "the query is wrong":
# class 08 (connection exception), 28 (authorization), 3D000 (no such database),
# 53300 (too many connections), 57P01-57P03 (shutdown, crash, starting up).
_UNAVAILABLE_STATES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")


def async_url(url: str) -> str:
    """``postgresql://`` or ``postgres://`` (any driver) as a ``postgresql+asyncpg://`` URL.

    Everything after the scheme, including ``?host=/socket/dir``, is kept as written.
    """
    if not _SCHEME.match(url):
        raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]!r}")
    return _SCHEME.sub("postgresql+asyncpg://", url, count=1)


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database (``scheme://user@host/<database>?...``)."""
    head, sep, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}{sep}{query}"


def create_engine(url: str) -> AsyncEngine:
    """An asyncpg engine with a bounded, self-healing pool."""
    return create_async_engine(
        async_url(url),
        # Sized for the daemon's busiest moments (API writers, dispatch workers, log
        # writers at once): a connection beyond the pool is closed when returned, and a
        # new one costs a server process and a fresh cache of plans for every function.
        pool_size=20,
        max_overflow=10,
        pool_timeout=30,
        # No ping per checkout: it costs a round trip on every transaction. A connection
        # the server dropped fails on use, SQLAlchemy then invalidates the pool, and the
        # caller sees StoreUnavailable (retried by the runtime, a 503 for API clients).
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"timeout": CONNECT_TIMEOUT},
    )


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database could not be reached (worth a retry later)."""
    if isinstance(error, OSError | TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, sa_exc.InterfaceError):
            return True
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES)
    return False


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction; unreachable-database errors surface as ``StoreUnavailable``."""
    try:
        async with engine.begin() as connection:
            yield connection
    except Exception as error:
        if is_unavailable(error):
            raise StoreUnavailable(f"database unavailable: {error}") from error
        raise


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection on which every statement is its own transaction: no BEGIN, no COMMIT.

    For reads and single-statement writes, where an explicit transaction only adds two
    round trips. Unreachable-database errors surface as ``StoreUnavailable``.
    """
    try:
        async with engine.connect() as connection:
            # Switches the driver's mode only: no round trip.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
    except Exception as error:
        if is_unavailable(error):
            raise StoreUnavailable(f"database unavailable: {error}") from error
        raise


ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"
"""A select-list or FROM item that makes its autocommitted statement commit without
waiting for the WAL flush. See :func:`wait_for_flush` for why and when."""

_FLUSH_SQL = "SELECT txid_current()"
_FLUSH = sa.text(_FLUSH_SQL)


async def wait_for_flush(connection: AsyncConnection) -> None:
    """Return once every commit made so far, async ones included, is on disk.

    The hot writes (admit, claim, replace) hold locks until their commit ends: the task's
    advisory lock, counter rows, and PostgreSQL's global NOTIFY queue lock (every status
    change notifies). With a synchronous commit they hold them through the WAL fsync, so
    writes of one task (and all notifying writes) went one fsync at a time. Committed with
    ``ASYNC_COMMIT`` they release at once; then this transaction, which takes an xid and
    commits synchronously, waits for the flush. WAL is flushed in order, so its flush
    covers the earlier commit, and concurrent flushes share one fsync (group commit).
    Callers wait for it before anything outside the database depends on the write (a
    response, a spawned process); a later write that saw the async commit is itself
    flushed after it, so a crash can never keep the later write and lose the earlier.
    """
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # pragma: no cover - only a closed connection has none
        await connection.execute(_FLUSH)
        return
    # Through the driver, in the simple protocol: a fifth of SQLAlchemy's cost per call.
    await driver.execute(_FLUSH_SQL)


async def ping(engine: AsyncEngine) -> bool:
    """Whether the database answers a trivial query within a few seconds."""
    try:
        async with asyncio.timeout(PING_TIMEOUT), transaction(engine) as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (StoreUnavailable, TimeoutError):
        return False
    return True


def _alembic_config(url: str) -> Config:
    # Alembic (with Mako) is ~11 MB of a daemon's memory: imported only to migrate.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # Passed as an attribute, not an option: options go through ConfigParser interpolation,
    # which would choke on percent-encoded passwords.
    config.attributes["url"] = url
    return config


def _upgrade(url: str) -> None:
    from alembic import command

    try:
        command.upgrade(_alembic_config(url), "head")
    except Exception as error:
        if is_unavailable(error):
            raise StoreUnavailable(f"database unavailable: {error}") from error
        raise


def migrate(url: str) -> None:
    """Bring the schema at ``url`` up to the newest revision (blocking).

    The migration environment runs its own event loop, so when called from a thread whose
    loop is running it runs in a worker thread instead (blocking that loop meanwhile).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(_upgrade, url).result()
        return
    _upgrade(url)


_REVISION = re.compile(
    r"""^(down_)?revision\s*(?::[^=]*)?=\s*(?:"([^"]*)"|'([^']*)'|None)\s*$""", re.M
)


def head_revision() -> str | None:
    """The newest migration's revision, read from the files without Alembic; None if
    that is not plain (several heads, or a revision line not written as a literal)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (Path(migrations.__file__).parent / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        found = {
            bool(m.group(1)): m.group(2) or m.group(3)
            for m in _REVISION.finditer(path.read_text(encoding="utf-8"))
        }
        if False not in found or True not in found:
            return None
        revisions.add(str(found[False]))
        if found[True]:
            parents.add(str(found[True]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None if it has none (or is unreadable)."""
    try:
        conn = await asyncpg.connect(_plain_url(url), timeout=CONNECT_TIMEOUT)
    except Exception:
        return None  # Alembic will say what is wrong
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    return str(rows[0][0]) if len(rows) == 1 else None


def _plain_url(url: str) -> str:
    return _SCHEME.sub("postgresql://", url, count=1)


async def migrate_async(url: str) -> None:
    """Bring the schema at ``url`` up to the newest revision without blocking the loop.

    A database already at the newest revision is left alone without importing Alembic
    (what a daemon restarting on its database sees), so the daemon does not carry it.
    """
    head = head_revision()
    if head is not None and await current_revision(url) == head:
        return
    await asyncio.to_thread(_upgrade, url)
