"""Coalescing of concurrent calls into one statement: what keeps a busy daemon's writes cheap.

Each statement costs a round trip, a commit, a firing of every statement trigger, and the
driver's and SQLAlchemy's Python per call. When 200 cron tasks come due in one second, or
16 API clients trigger one task at once, most of that is the same work done 200 times.
A :class:`Batcher` sends a call at once when nothing is in flight, and otherwise queues
it; when the statement in flight returns, everything queued goes as the next one. An idle
daemon so pays no latency for it, and a busy one sends few, larger statements.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.errors import StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 64
"""The most calls one statement carries: the first of a burst start without waiting for
the last to be decided."""
LANES = 4
"""Batches of one kind in flight at once (:class:`Lanes`): enough to keep both cores of a
small server busy."""


@dataclass(slots=True)
class BatchStats:
    """What a :class:`Batcher` has sent so far."""

    calls: int = 0
    """Calls submitted."""
    statements: int = 0
    """Statements sent: batches, single calls, and the single calls of failed batches."""
    failed_batches: int = 0
    """Batches that failed and were sent again one call at a time."""


class Batcher(Generic[T, R]):
    """Runs ``send_many`` over the calls queued meanwhile; ``send_one`` when a batch fails.

    ``send_many(items)`` returns one result per item, in order. If it raises (other than
    :class:`StoreUnavailable`, which every caller of the batch gets), each item of that
    batch is sent again alone with ``send_one``, so one bad item fails only its own caller.
    A caller cancelled while its item is in flight does not cancel the others; its item may
    still be written, as with any statement cancelled after it was sent.
    """

    def __init__(
        self,
        send_many: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        send_one: Callable[[T], Awaitable[R]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._send_many = send_many
        self._send_one = send_one
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.stats = BatchStats()

    async def submit(self, item: T) -> R:
        """The result of ``item``, sent with whatever else is queued by then."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        self.stats.calls += 1
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if live:
                await self._send(live)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        self.stats.statements += 1
        try:
            if len(items) == 1:
                results: Sequence[R] = [await self._send_one(items[0])]
            else:
                results = await self._send_many(items)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except StoreUnavailable as exc:
            for _, future in batch:
                _fail(future, exc)
            return
        except Exception as exc:
            if len(items) == 1:
                _fail(batch[0][1], exc)
                return
            self.stats.failed_batches += 1
            self.stats.statements += len(items)
            await asyncio.gather(*(self._send_alone(item, future) for item, future in batch))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _send_alone(self, item: T, future: asyncio.Future[R]) -> None:
        try:
            result = await self._send_one(item)
        except Exception as exc:
            _fail(future, exc)
        else:
            if not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Lanes(Generic[T, R]):
    """:class:`Batcher` side by side: a call's lane is chosen by its key (its task).

    Calls of one key always share a lane, so they are sent in the order made (a task's
    triggers stay first in, first out); lanes send concurrently. Batches of different
    lanes hold disjoint tasks, hence disjoint task locks and counter rows.
    """

    def __init__(
        self,
        send_many: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        send_one: Callable[[T], Awaitable[R]],
        key: Callable[[T], str],
        lanes: int = LANES,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._key = key
        self._lanes = [Batcher(send_many, send_one, max_batch) for _ in range(lanes)]

    async def submit(self, item: T) -> R:
        """The result of ``item``, sent in its key's lane."""
        lane = zlib.crc32(self._key(item).encode()) % len(self._lanes)
        return await self._lanes[lane].submit(item)

    @property
    def stats(self) -> BatchStats:
        """The lanes' counts, summed."""
        return BatchStats(
            calls=sum(b.stats.calls for b in self._lanes),
            statements=sum(b.stats.statements for b in self._lanes),
            failed_batches=sum(b.stats.failed_batches for b in self._lanes),
        )
