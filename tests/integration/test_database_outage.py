"""PostgreSQL goes away for 20 s while runs execute and print; nothing is lost or doubled."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.postgres.embedded import run_coroutine
from tests.support.daemon import start_daemon, wait_for
from tests.support.outage import StoppableServer

pytestmark = pytest.mark.slow

CONFIG = """
[tasks.printer]
run = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; sleep 0.1; done"

[tasks.short]
run = "sleep 3; echo done"

[tasks.ticker]
run = "echo tick"
cron = "* * * * * *"
catch_up = "latest"
"""

OUTAGE = 20.0


@pytest.fixture
def server() -> Iterator[StoppableServer]:
    # Not under pytest's tmp dir: the server runs as another user and needs to reach it.
    directory = Path(tempfile.mkdtemp(prefix="runwarden-outage-"))
    directory.chmod(0o755)
    server = StoppableServer(directory)
    try:
        yield server
    finally:
        server.close()


def log_texts(url: str, run_id: str) -> list[tuple[str, str]]:
    from adapters.postgres.database import create_engine
    from adapters.postgres.logs import PostgresLogStore

    async def read() -> list[tuple[str, str]]:
        engine = create_engine(url)
        try:
            lines = await PostgresLogStore(engine).read(run_id, 0, 100_000)
            return [(line.stream.value, line.text) for line in lines]
        finally:
            await engine.dispose()

    return run_coroutine(read)


def test_a_database_outage_loses_no_run_and_no_output(
    server: StoppableServer, tmp_path: Path
) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(CONFIG)
    daemon = start_daemon(config, server.url, tmp_path)
    try:
        with daemon.client() as client:
            printer = client.post("/api/tasks/printer/run").json()["id"]
            short = client.post("/api/tasks/short/run").json()["id"]
            wait_for(lambda: client.get(f"/api/runs/{printer}").json()["status"] == "running")
            time.sleep(1)

            server.stop()
            down_at = datetime.now(UTC)
            time.sleep(2)
            assert client.get("/health").status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503
            listing = client.get("/api/tasks/printer/runs")
            assert listing.status_code == 503
            assert listing.headers["content-type"].startswith("application/problem+json")
            time.sleep(OUTAGE - 2)
            server.start()
            up_at = datetime.now(UTC)

            wait_for(lambda: client.get("/ready").status_code == 200, timeout=60)
            wait_for(
                lambda: client.get(f"/api/runs/{printer}").json()["status"] == "ended",
                timeout=90,
            )
            for task, run_id in (("printer", printer), ("short", short)):
                runs = client.get(f"/api/tasks/{task}/runs").json()["runs"]
                assert [r["id"] for r in runs] == [run_id], "each run recorded once"
                assert (runs[0]["end_reason"], runs[0]["exit_code"]) == ("success", 0)

            lines = log_texts(server.url, printer)
            printed = [text for stream, text in lines if stream == "stdout"]
            lost = [text for stream, text in lines if stream == "system" and "lost" in text]
            if not lost:
                assert printed == [f"line {i}" for i in range(1, 301)]
            else:
                # Loss is allowed only beyond the memory bound, and then it is said.
                assert printed == sorted(set(printed), key=lambda t: int(t.split()[1]))

            def ticks() -> list[str]:
                runs = client.get("/api/tasks/ticker/runs", params={"limit": 1000}).json()
                return [r["created_at"] for r in runs["runs"]]

            during = [
                t
                for t in ticks()
                if down_at < datetime.fromisoformat(t.replace("Z", "+00:00")) < up_at
            ]
            assert during, "a tick due in the outage is caught up (catch_up = latest)"
            assert len(set(ticks())) == len(ticks()), "no tick recorded twice"
    finally:
        assert daemon.terminate() == 0
