"""Start the real daemon (`runwarden serve`) as a child process for tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    """A `runwarden serve` we started; stopped only by its pid."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    token: str | None = None
    """The API token the daemon accepts; None when started with ``token=None``."""

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` for :attr:`token`, for requests made without :meth:`client`."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> httpx.Client:
        """A client at the daemon's URL that sends the token."""
        return httpx.Client(base_url=self.url, timeout=30, headers=self.headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the graceful shutdown a service manager does."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the daemon dies with no chance to record anything."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


_DEFAULT = "generate"


def start_daemon(
    config: Path,
    database_url: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    token: str | None = _DEFAULT,
    args: list[str] | None = None,
    port: int | None = None,
) -> DaemonProcess:
    """Start ``runwarden serve`` and wait until it answers ``/health``.

    By default it accepts one random token (``RUNWARDEN_API_TOKENS``), which
    :meth:`DaemonProcess.client` sends; ``token=None`` leaves the auth setup to
    ``extra_env`` and the config. ``args`` are extra ``serve`` options; ``port`` the one to
    listen on (default: a free one), e.g. to restart a daemon where its clients look for it.
    """
    port = port or free_port()
    if token == _DEFAULT:
        token = secrets.token_urlsafe(16)
    auth_env = {"RUNWARDEN_API_TOKENS": token} if token else {}
    # The test's own settings only: a RUNWARDEN_AUTH=off in the shell must not leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNWARDEN_")}
    env.update({"DATABASE_URL": database_url, **auth_env, **(extra_env or {})})
    log_path = workdir / f"daemon-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--data",
                str(workdir / "data"),
                *(args or []),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
    daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log_path, token)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{daemon.log()}")
        try:
            if httpx.get(f"{daemon.url}/health", timeout=1).status_code == 200:
                return daemon
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    daemon.kill()
    raise RuntimeError(f"daemon did not answer within {START_TIMEOUT}s:\n{daemon.log()}")


@contextmanager
def running_daemon(
    config_text: str,
    database_url: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    """A daemon serving ``config_text`` (written to ``workdir``), terminated afterwards."""
    config = workdir / "runwarden.toml"
    config.write_text(config_text)
    daemon = start_daemon(config, database_url, workdir, extra_env)
    try:
        yield daemon
    finally:
        daemon.terminate()


def module_daemon(config_text: str, name: str):  # type: ignore[no-untyped-def]
    """A module-scoped ``daemon`` fixture serving ``config_text`` on the module's database.

    In a test module: ``daemon = module_daemon(CONFIG, "trigger")``.
    """

    @pytest.fixture(scope="module")
    def daemon(
        module_database_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[DaemonProcess]:
        workdir = tmp_path_factory.mktemp(name)
        with running_daemon(config_text, module_database_url, workdir) as started:
            yield started

    return daemon


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` returns something truthy; return it, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
