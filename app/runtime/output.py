"""Capture of one run's output into the log store, in bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from domain.logs import LineAssembler, LogLine, LogStream
from domain.ports import Clock, LogStore, OutputSink

log = logging.getLogger(__name__)

FLUSH_BYTES = 256 * 1024
"""Buffered output that forces a write: large batches make storage cheap."""
FLUSH_INTERVAL = 0.1
"""Seconds a line may wait in memory, so live readers see output promptly."""


class RunOutput(OutputSink):
    """Numbers a run's lines and stores them in batches.

    ``write`` awaits the store once the buffer is full, so a process printing faster than
    PostgreSQL can store waits on its pipe instead of growing the daemon's memory.
    """

    def __init__(self, run_id: str, store: LogStore, clock: Clock) -> None:
        self._run_id = run_id
        self._store = store
        self._clock = clock
        self._lines = LineAssembler()
        self._pending: list[LogLine] = []
        self._pending_bytes = 0
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def total_lines(self) -> int:
        return self._lines.next_n

    def open(self) -> None:
        """Start the timer that flushes idle output."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def write(self, stream: LogStream, data: bytes) -> None:
        self._add(self._lines.feed(stream, data, self._clock.now()))
        if self._pending_bytes >= FLUSH_BYTES:
            await self.flush()

    async def system(self, text: str) -> None:
        """Record a line written by runwarden itself, and store it at once."""
        self._add([self._lines.system(text, self._clock.now())])
        await self.flush()

    async def close(self) -> None:
        """Store partial lines and everything buffered; stop the timer."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._add(self._lines.flush(self._clock.now()))
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, size = self._pending, self._pending_bytes
            self._pending, self._pending_bytes = [], 0
            try:
                await self._store.append(self._run_id, batch)
            except BaseException:
                # Keep the lines in order for the next attempt rather than lose them.
                self._pending = batch + self._pending
                self._pending_bytes += size
                raise

    def _add(self, lines: list[LogLine]) -> None:
        self._pending.extend(lines)
        self._pending_bytes += sum(len(line.text) + 16 for line in lines)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                # The final flush at close retries; a live reader only sees output later.
                log.exception("storing output of run %s failed", self._run_id)
