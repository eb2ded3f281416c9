"""Capture of one run's output into the log store: bounded memory, a log budget, outages.

Three things bound what one run can cost, whatever its process prints:

- Memory. Lines are stored in batches of about ``FLUSH_BYTES``; ``write`` awaits the store
  once that much is buffered, so a process printing faster than PostgreSQL stores waits on
  its pipe. One chunk from the executor (64 KiB) adds at most one batch's worth of lines.
  Lines stay in the columnar segments the assembler makes (one string per chunk read), so
  nothing here costs a Python step per line unless a budget is crossed inside a chunk.
- ``log_max_size`` under ``log_on_full``: ``drop_new`` keeps the head and discards the rest,
  ``drop_old`` stores everything and trims the oldest batches, ``kill_task`` asks for the
  process to be stopped. Sizes are UTF-8 bytes of line texts, as the store counts them.
- Store outages. A failing store never raises into the capture and never blocks the process
  for long: lines wait in memory up to ``HOLD_BYTES`` (the oldest are lost beyond it, with a
  system line saying how many), writes are retried with backoff, and ``close`` gives up after
  ``close_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.runtime.pending import PendingLines
from domain.logs import LineAssembler, LogBatch, LogSegment, LogStream, utf8_size
from domain.policies import LogVerdict, log_verdict
from domain.ports import Clock, LogStore, OutputSink
from domain.tasks import LogOnFull, TaskSpec

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
"""Buffered output that forces a write: large batches make storage cheap. Lines weigh
their text plus ``pending.LINE_OVERHEAD``."""
FLUSH_INTERVAL = 0.1
"""Seconds a line may wait in memory, so live readers see output promptly."""
HOLD_BYTES = 8 * 1024 * 1024
"""The most output held per run while the store fails; beyond it the oldest is lost."""
CLOSE_TIMEOUT = 60.0
"""Seconds ``close`` keeps trying to store held output before counting it lost."""
STORE_TIMEOUT = 30.0
"""Seconds one store call may take before it counts as failed (a hung connection)."""
RETRY_FIRST = 0.25
RETRY_MAX = 5.0
"""Seconds between attempts while the store fails: doubling from the first to the max."""

_T = TypeVar("_T")

_DEFAULT_TASK = TaskSpec(name="", run="")


def format_size(size: int) -> str:
    """``100.0 MB``, ``512.0 kB``, ``12 bytes``: decimal units, as the config takes them."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class RunOutput(OutputSink):
    """Numbers a run's lines, applies its log budget and stores the lines in batches.

    Line numbers are dense over the stored lines: discarded output gets none. ``on_overflow``
    is called once when ``kill_task`` output exceeds the budget; the caller stops the process.
    """

    def __init__(
        self,
        run_id: str,
        store: LogStore,
        clock: Clock,
        task: TaskSpec | None = None,
        on_overflow: Callable[[], None] | None = None,
        *,
        close_timeout: float = CLOSE_TIMEOUT,
        store_timeout: float = STORE_TIMEOUT,
    ) -> None:
        self._run_id = run_id
        self._store = store
        self._clock = clock
        self._task = task or _DEFAULT_TASK
        self._on_overflow = on_overflow
        self._close_timeout = close_timeout
        self._store_timeout = store_timeout
        self._lines = LineAssembler()
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        budget = self._task.log_max_size
        self._trimming = self._task.log_on_full is LogOnFull.DROP_OLD
        # Trimming drops whole batches, so under drop_old a batch is a small part of the budget.
        # A trim goes an eighth below the budget, so it is paid once every few batches.
        self._flush_bytes = min(FLUSH_BYTES, max(budget // 8, 1)) if self._trimming else FLUSH_BYTES
        self._trim_to = budget - budget // 8
        self._pending = PendingLines()
        # The protected pending lines were handed to a write that failed: maybe stored.
        self._uncertain = False
        self._storing: asyncio.Task[None] | None = None
        # The budget: bytes of output lines accepted (drop_new, kill_task); stored batches
        # as the store will trim them (drop_old).
        self._accepted = 0
        self._discarding = False
        self._partial_streams: set[LogStream] = set()
        self._batches: deque[int] = deque()
        self._stored_text = 0
        self._trim_noticed = False
        self._overflowed = False
        self._dropped = 0
        # Store failures: consecutive count, when to retry, lines lost and not yet reported.
        self._failures = 0
        self._retry_at = 0.0
        self._lost = 0
        self._lost_unreported = 0

    @property
    def total_lines(self) -> int:
        """Lines numbered so far: stored, waiting to be stored, or lost to an outage."""
        return self._lines.next_n

    @property
    def overflowed(self) -> bool:
        """True once ``kill_task`` output exceeded ``log_max_size``."""
        return self._overflowed

    @property
    def dropped_lines(self) -> int:
        """Output lines discarded by the budget (``drop_new``, ``kill_task``); never numbered."""
        return self._dropped + len(self._partial_streams)

    @property
    def lost_lines(self) -> int:
        """Numbered lines never stored because the store failed."""
        return self._lost

    def open(self) -> None:
        """Start the timer that flushes idle output and retries a failing store."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def write(self, stream: LogStream, data: bytes) -> None:
        """Take one chunk of output; awaits the store when a batch is full (backpressure).

        Never raises because of the store.
        """
        if self._closed:
            return
        if self._discarding:
            self._discard(stream, data)
            return
        overflowed = self._accept(self._lines.feed(stream, data, self._clock.now()))
        if overflowed or self._pending.unsent_weight >= self._flush_bytes:
            await self._make_room(overflowed)

    async def _make_room(self, overflowed: bool) -> None:
        """A batch is full: store it in the background, or in line when the store is behind.

        One batch is stored while the next one fills, so reading the process's output and
        storing it overlap; a second full batch waits for the first (backpressure). A flood
        in one chunk, an overflow notice and a failing store are handled in line.
        """
        if self._storing is not None:
            await self._storing
            self._storing = None
        new = self._pending.unsent_weight
        if overflowed or self._failures or new >= 2 * self._flush_bytes:
            await self.flush()
        elif new >= self._flush_bytes:
            self._storing = asyncio.get_running_loop().create_task(self._store_one())

    async def _store_one(self) -> None:
        async with self._lock:
            if not self._failures:
                await self._drain(batches=1)

    async def system(self, text: str) -> None:
        """Record a line written by runwarden itself, and store it at once."""
        self._add(self._lines.system(text, self._clock.now()))
        await self.flush()

    async def close(self) -> None:
        """Store partial lines and everything held, trying for ``close_timeout`` seconds.

        What cannot be stored by then is counted in ``lost_lines`` and logged; never raises.
        """
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._storing is not None:
            await self._storing
        if not self._discarding:
            self._accept(self._lines.flush(self._clock.now()))
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        async with self._lock:
            while not await self._drain(deadline=deadline):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(self._retry_delay(), remaining))
            if self._pending:
                lost = self._pending.clear()
                self._lost += lost
                log.warning(
                    "run %s: gave up storing %d lines of output after %gs; they are lost",
                    self._run_id,
                    lost,
                    self._close_timeout,
                )

    async def flush(self) -> None:
        """Store what is buffered, unless the store is failing and no retry is due yet."""
        async with self._lock:
            if self._failures and self._clock.monotonic() < self._retry_at:
                return
            await self._drain()

    def _accept(self, batch: LogBatch) -> bool:
        """Buffer new output lines within the budget; True if this batch overflowed it."""
        size = batch.size
        if self._trimming or log_verdict(self._task, self._accepted, size) is LogVerdict.KEEP:
            self._accepted += size
            self._add(batch)
            return False
        # The budget ends inside this batch: find the first line that does not fit.
        kept: list[LogSegment] = []
        n = batch.first_n
        for segment in batch.segments:
            if log_verdict(self._task, self._accepted, segment.size) is LogVerdict.KEEP:
                self._accepted += segment.size
                kept.append(segment)
                n += segment.count
                continue
            texts = segment.lines()
            for i, text in enumerate(texts):
                line_size = utf8_size(text)
                if log_verdict(self._task, self._accepted, line_size) is LogVerdict.KEEP:
                    self._accepted += line_size
                    continue
                if i:
                    kept.append(LogSegment.of(segment.stream, segment.ts, texts[:i]))
                self._add(LogBatch(batch.first_n, kept))
                self._overflow(n + i, batch.end - (n + i))
                return True
            n += segment.count
        self._add(batch)
        return False

    def _overflow(self, first_dropped_n: int, dropped: int) -> None:
        """The budget is full: drop the rest and number the notice in the first gap."""
        self._discarding = True
        now = self._clock.now()
        # Open lines are dropped too; the newline that ends one later counts it.
        self._partial_streams.update(s.stream for s in self._lines.flush(now).segments)
        self._dropped += dropped
        self._lines.next_n = first_dropped_n
        size = format_size(self._task.log_max_size)
        if self._task.log_on_full is LogOnFull.KILL_TASK:
            self._overflowed = True
            text = f"runwarden: output exceeded {size} (log_max_size); stopping the task"
        else:
            text = f"runwarden: output truncated at {size} (log_max_size); further output discarded"
        self._add(self._lines.system(text, now))
        if self._overflowed and self._on_overflow is not None:
            try:
                self._on_overflow()
            except Exception:
                log.exception("run %s: the overflow callback failed", self._run_id)

    def _discard(self, stream: LogStream, data: bytes) -> None:
        # Counted, not numbered. A line left open at the end of one chunk ends in a later one.
        self._dropped += data.count(b"\n")
        if data.endswith(b"\n"):
            self._partial_streams.discard(stream)
        elif data:
            self._partial_streams.add(stream)

    def _add(self, batch: LogBatch) -> None:
        self._pending.add(batch)
        if self._failures and self._pending.weight > HOLD_BYTES:
            self._shed()

    def _shed(self) -> None:
        """The store is failing and too much is held: lose the oldest lines, renumbering.

        Lines after the lost ones take their numbers, so stored numbers stay dense; lines
        already handed to the store keep theirs. A quarter of the hold goes at once, whole
        segments at a time, so the loss is paid rarely.
        """
        lost = self._pending.shed(HOLD_BYTES * 3 // 4)
        self._lines.next_n -= lost
        self._lost += lost
        self._lost_unreported += lost

    async def _drain(self, deadline: float | None = None, batches: int | None = None) -> bool:
        """Store every pending line (or ``batches`` batches) in batches, then trim; True if
        nothing is left pending.

        Called under the lock. A failure leaves the lines pending and schedules a retry.
        """
        try:
            if self._uncertain:
                await self._forget_stored(deadline)
            while True:
                if self._trimming and self._stored_text > self._task.log_max_size:
                    await self._call(self._store.trim(self._run_id, self._trim_to), deadline)
                    self._trimmed()
                if not self._pending:
                    return True
                if batches is not None:
                    if batches <= 0:
                        return False
                    batches -= 1
                batch = self._pending.next_batch(self._flush_bytes)
                self._uncertain = True
                await self._call(self._store.append(self._run_id, batch), deadline)
                self._stored(self._pending.protected)
                self._recovered()
        except Exception as exc:
            self._failed(exc)
            return False

    async def _call(self, call: Awaitable[_T], deadline: float | None) -> _T:
        """Await one store call, as failed if it takes longer than ``store_timeout``."""
        loop = asyncio.get_running_loop()
        limit = loop.time() + self._store_timeout
        if deadline is not None:
            limit = min(limit, deadline)
        async with asyncio.timeout_at(limit):
            return await call

    async def _forget_stored(self, deadline: float | None) -> None:
        """After a failed append, drop from the head what the store has in fact stored.

        A write can fail after its transaction committed (a lost reply, a timeout); sending
        those lines again would duplicate their numbers.
        """
        _, total = await self._call(self._store.stats(self._run_id), deadline)
        self._stored(self._pending.stored_below(total))

    def _stored(self, count: int) -> None:
        """The first ``count`` pending segments are stored."""
        text = self._pending.stored(count)
        self._uncertain = False
        if self._trimming and count:
            self._batches.append(text)
            self._stored_text += text

    def _recovered(self) -> None:
        """An append succeeded: end the outage, and say what it cost if anything."""
        if self._failures:
            log.info("run %s: storing output works again", self._run_id)
            self._failures = 0
        if self._lost_unreported:
            lost, self._lost_unreported = self._lost_unreported, 0
            text_line = f"runwarden: {lost} lines lost while the database was unavailable"
            self._add(self._lines.system(text_line, self._clock.now()))

    def _trimmed(self) -> None:
        """Mirror the store's trim: whole batches go, oldest first, down to ``_trim_to``."""
        while self._batches and self._stored_text > self._trim_to:
            self._stored_text -= self._batches.popleft()
        if not self._trim_noticed:
            self._trim_noticed = True
            size = format_size(self._task.log_max_size)
            text = f"runwarden: output exceeded {size} (log_max_size); oldest lines discarded"
            self._add(self._lines.system(text, self._clock.now()))

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self._retry_at = self._clock.monotonic() + self._retry_delay()
        if self._failures == 1:
            log.warning(
                "run %s: storing output failed (%r); holding it and retrying",
                self._run_id,
                exc,
            )

    def _retry_delay(self) -> float:
        if not self._failures:
            return RETRY_FIRST
        return float(min(RETRY_FIRST * 2 ** min(self._failures - 1, 16), RETRY_MAX))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                # flush handles store errors itself; this is a bug, not an outage.
                log.exception("run %s: flushing output failed", self._run_id)
