"""The coalescing of concurrent calls into batches (adapters/postgres/batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adapters.postgres.batching import Batcher, Lanes
from domain.errors import StoreUnavailable


class Store:
    """Doubles numbers, one batch at a time, remembering how each batch was made up."""

    def __init__(self, fail_batches: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_batches = fail_batches
        self.release = asyncio.Event()

    async def many(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_batches is not None:
            raise self.fail_batches
        return [2 * i for i in items]

    async def one(self, item: int) -> int:
        self.batches.append([item])
        await self.release.wait()
        if item < 0:
            raise ValueError(f"bad item {item}")
        return 2 * item


async def in_flight(batcher: Batcher[int, int], item: int) -> asyncio.Task[int]:
    """A call that has been sent (its store call is waiting for ``release``)."""
    call = asyncio.create_task(batcher.submit(item))
    for _ in range(3):
        await asyncio.sleep(0)
    return call


async def test_calls_made_while_one_is_in_flight_go_together_next() -> None:
    store = Store()
    batcher = Batcher(store.many, store.one)
    calls = [await in_flight(batcher, 0)]
    calls += [asyncio.create_task(batcher.submit(i)) for i in range(1, 5)]
    await asyncio.sleep(0)
    store.release.set()
    assert await asyncio.gather(*calls) == [0, 2, 4, 6, 8]
    assert store.batches == [[0], [1, 2, 3, 4]]


async def test_an_idle_batcher_sends_a_call_at_once() -> None:
    store = Store()
    store.release.set()
    batcher = Batcher(store.many, store.one)
    assert await batcher.submit(21) == 42
    assert await batcher.submit(1) == 2
    assert store.batches == [[21], [1]]


async def test_a_batch_is_never_larger_than_its_limit() -> None:
    store = Store()
    store.release.set()
    batcher = Batcher(store.many, store.one, max_batch=3)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
    assert results == [2 * i for i in range(8)]
    assert [len(b) for b in store.batches] == [3, 3, 2]


async def test_a_failed_batch_is_sent_again_one_call_at_a_time() -> None:
    store = Store(fail_batches=RuntimeError("one of them is bad"))
    batcher = Batcher(store.many, store.one)
    calls = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, -3, 4)]
    await asyncio.sleep(0)
    store.release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[:2] == [2, 4]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == 8
    assert store.batches[0] == [1, 2, -3, 4]
    assert sorted(store.batches[1:]) == [[-3], [1], [2], [4]]


async def test_an_unavailable_store_fails_every_call_of_the_batch() -> None:
    store = Store(fail_batches=StoreUnavailable("database unavailable"))
    batcher = Batcher(store.many, store.one)
    first = await in_flight(batcher, 1)
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    store.release.set()
    assert await first == 2  # sent alone, through ``one``
    for call in rest:
        with pytest.raises(StoreUnavailable):
            await call
    assert store.batches == [[1], [2, 3]]


async def test_a_cancelled_call_does_not_cancel_the_others() -> None:
    store = Store()
    batcher = Batcher(store.many, store.one)
    calls = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
    await asyncio.sleep(0)
    calls[2].cancel()
    store.release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[0] == 0
    assert outcomes[1] == 2
    assert outcomes[3] == 6
    assert isinstance(outcomes[2], asyncio.CancelledError)


async def test_lanes_keep_each_key_in_order_and_send_lanes_at_once() -> None:
    in_flight = 0
    most_in_flight = 0
    sent: list[list[tuple[str, int]]] = []

    async def many(items: Sequence[tuple[str, int]]) -> list[int]:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        sent.append(list(items))
        await asyncio.sleep(0.01)
        in_flight -= 1
        return [n for _, n in items]

    async def one(item: tuple[str, int]) -> int:
        return (await many([item]))[0]

    lanes = Lanes(many, one, key=lambda item: item[0], lanes=4)
    calls = [(f"task{k % 8}", k) for k in range(64)]
    assert await asyncio.gather(*(lanes.submit(c) for c in calls)) == list(range(64))
    assert most_in_flight > 1
    for task in {name for name, _ in calls}:
        order = [n for batch in sent for name, n in batch if name == task]
        assert order == sorted(order), f"{task} was sent out of order"
    assert lanes.stats.calls == 64
    assert lanes.stats.statements == len(sent)
