"""Where the benchmarks run: the bench database and a daemon started the documented way.

The database is ``BENCH_DATABASE_URL`` if set; else ``runwarden_bench`` on the local server
``postgresql://postgres@127.0.0.1:5432/``; else, when nothing answers there, a database of
the embedded PostgreSQL (``.runwarden/bench/pg``), kept alive for the life of this process.

The daemon is ``.venv/bin/runwarden serve --config <file> --port <free port>`` with
``DATABASE_URL`` set, exactly as the README documents it, and a bearer token.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from adapters.postgres.database import with_database

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".runwarden" / "bench"  # ignored by git, like the daemon's own data
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "runwarden_bench"
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT = 120.0

_embedded = None  # keeps the embedded server referenced (it stops at interpreter exit)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _ensure_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def bench_database_url() -> str:
    """The URL of the bench database, created if needed (see the module docstring)."""
    global _embedded
    configured = os.environ.get("BENCH_DATABASE_URL")
    if configured:
        return configured
    if await _answers(LOCAL_SERVER):
        return await _ensure_database(LOCAL_SERVER, DATABASE)
    from adapters.postgres.embedded import EmbeddedPostgres

    _embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(_embedded.start, WORK / "pg")
    return await _ensure_database(url, DATABASE)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runwarden() -> list[str]:
    script = Path(sys.executable).with_name("runwarden")
    if script.exists():
        return [str(script)]
    found = shutil.which("runwarden")
    return [found] if found else [sys.executable, "-m", "app.cli"]


@dataclass
class Daemon:
    """A ``runwarden serve`` this process started; stopped by its pid only."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the daemon process itself (not of the runs it spawned)."""
        return float(psutil.Process(self.pid).memory_info().rss) / 1e6

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Usage:
    """CPU the daemon used over a stretch of wall time, and how busy the machine was.

    ``daemon_cpu_pct`` is of one core (100 = one core flat out); ``machine_busy_pct`` of all
    cores, everything included (PostgreSQL, the client, other tenants of the machine).
    """

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._cpu = daemon.cpu_seconds()
        self._wall = time.perf_counter()
        psutil.cpu_percent()  # starts the machine-wide interval

    def result(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        return {
            "daemon_cpu_pct": round(100 * (self._daemon.cpu_seconds() - self._cpu) / wall, 1),
            "machine_busy_pct": round(psutil.cpu_percent(), 1),
        }


def _http_ok(port: int, path: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_daemon(name: str, config_text: str, database_url: str) -> Daemon:
    """Write ``config_text`` to ``.runwarden/bench/<name>.toml``, serve it; wait until ready."""
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / f"{name}.toml"
    config.write_text(config_text)
    port = free_port()
    log_path = WORK / f"{name}.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RUNWARDEN_API_TOKENS": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *_runwarden(),
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--data",
                str(WORK / "data"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    daemon = Daemon(proc, f"http://127.0.0.1:{port}", port, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}; see {log_path}")
        if _http_ok(port, "/ready"):
            return daemon
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"daemon not ready within {START_TIMEOUT:.0f} s; see {log_path}")
