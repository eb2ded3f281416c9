"""Several real daemons on one database, and the faults a cluster must survive.

A node's death is its daemon and its process groups killed together, as when a machine
goes: the daemon is frozen first (so it starts nothing more), every process group of its
children is SIGKILLed, then the daemon. Only processes these helpers started are touched.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psutil

from tests.support.daemon import DaemonProcess, start_daemon, wait_for


def node_id(daemon: DaemonProcess) -> str:
    """The daemon's current node id (``/api/info``)."""
    with daemon.client() as client:
        return str(client.get("/api/info").json()["node_id"])


def process_groups(daemon: DaemonProcess) -> set[int]:
    """Process groups of the daemon's children: one per run it is running."""
    own = os.getpgid(0)
    groups = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(daemon.proc.pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                groups.add(os.getpgid(child.pid))
    return groups - {own}


def kill_node(daemon: DaemonProcess) -> None:
    """The machine dies: the daemon and every process group it started, at once."""
    if daemon.proc.poll() is not None:
        return
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    for group in process_groups(daemon):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    daemon.kill()


def processes_with(daemons: list[DaemonProcess], variable: str, value: str) -> list[int]:
    """Pids among the daemons' descendants whose environment has ``variable=value``,
    leaders of their process groups only (the shells the daemons started)."""
    found = []
    for daemon in daemons:
        if daemon.proc.poll() is not None:
            continue
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(daemon.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    if os.getpgid(child.pid) != child.pid or child.status() == "zombie":
                        continue
                    if child.environ().get(variable) == value:
                        found.append(child.pid)
    return found


class Nodes:
    """Daemons serving one config on one database, each in its own work dir."""

    def __init__(
        self,
        config_text: str,
        database_url: str,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = extra_env
        self.config = workdir / "runwarden.toml"
        self.config.write_text(config_text)
        self.database_url = database_url
        self.workdir = workdir
        self.daemons: list[DaemonProcess] = []
        self._count = 0

    def start(self, database_url: str | None = None) -> DaemonProcess:
        """One more node (on ``database_url``, e.g. through a proxy, if given)."""
        self._count += 1
        workdir = self.workdir / f"node{self._count}"
        workdir.mkdir()
        daemon = start_daemon(
            self.config, database_url or self.database_url, workdir, self.extra_env
        )
        self.daemons.append(daemon)
        return daemon

    def stop_all(self) -> None:
        """SIGTERM every daemon still running (graceful), then make sure none is left."""
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                daemon.terminate()
        for daemon in self.daemons:
            kill_node(daemon)

    def live(self) -> list[DaemonProcess]:
        return [d for d in self.daemons if d.proc.poll() is None]


@contextlib.contextmanager
def cluster(
    config_text: str,
    database_url: str,
    workdir: Path,
    size: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Nodes]:
    """``size`` daemons started one after the other; all stopped afterwards."""
    nodes = Nodes(config_text, database_url, workdir, extra_env)
    try:
        for _ in range(size):
            nodes.start()
        yield nodes
    finally:
        nodes.stop_all()


class TcpProxy:
    """A TCP proxy from 127.0.0.1 to the database server, whose link can be cut.

    ``cut`` stops forwarding without closing anything, as a network partition does: a
    client's queries hang and new connections get no answer. ``mend`` drops the hung
    connections (clients see them fail and reconnect) and forwards again.
    """

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        query = parse_qs(parts.query)
        port = int(query.get("port", [str(parts.port or 5432)])[0])
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._upstream: str | tuple[str, int] = (
            f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def mend(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
        self._cut.clear()

    def close(self) -> None:
        self._stopped.set()
        self.mend()
        self._listener.close()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self._upstream, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._upstream)
            return upstream
        return socket.create_connection(self._upstream)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(client)
            if self._cut.is_set():
                continue  # held unanswered until mended
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._held.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select(list(pair), [], [], 0.2)
                if self._cut.is_set():
                    time.sleep(0.05)  # partitioned: nothing gets through
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()


def wait_until(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """``wait_for`` with the cluster tests' default guard (a hang fails, it is no timing)."""
    return wait_for(predicate, timeout=timeout, interval=0.1)
