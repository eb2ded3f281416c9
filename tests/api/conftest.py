"""A daemon process per module, on its own database, for the HTTP contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.postgres.embedded import run_coroutine
from tests.api.test_list_runs import make_runs
from tests.support.daemon import DaemonProcess, start_daemon

# The seeded history is of tasks this daemon does not run: a node takes over pending runs
# nobody holds of the tasks it runs, which would change the history under the tests.
LISTING_CONFIG = """
[tasks.gamma]
run = "echo gamma"
"""

COLUMNS = [
    "id",
    "task_name",
    "status",
    "end_reason",
    "exit_code",
    "start_at",
    "end_at",
    "created_at",
    "triggered_by",
    "replica_index",
    "retry_attempt",
]


async def _insert_runs(url: str, runs: list[dict[str, Any]]) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.executemany(
            f"INSERT INTO runs ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))})",
            [tuple(run[c] for c in COLUMNS) for run in runs],
        )
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def seeded_runs(listing_daemon: DaemonProcess, module_database_url: str) -> list[dict[str, Any]]:
    # Written after the daemon started, so its start-up recovery does not touch them.
    runs = make_runs()
    run_coroutine(lambda: _insert_runs(module_database_url, runs))
    return runs


@pytest.fixture(scope="module")
def listing_daemon(
    module_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("listing")
    config = workdir / "runwarden.toml"
    config.write_text(LISTING_CONFIG)
    daemon = start_daemon(config, module_database_url, workdir)
    try:
        yield daemon
    finally:
        daemon.terminate()


@pytest.fixture(scope="module")
def daemon(listing_daemon: DaemonProcess) -> DaemonProcess:
    """The daemon the shared ``client`` fixture talks to, unless a module brings its own."""
    return listing_daemon


def write_config(directory: Path, text: str) -> Path:
    path = directory / "runwarden.toml"
    path.write_text(text)
    return path
