"""RunOutput: the log budget under each policy, bounded memory, and store outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from adapters.memory import FakeClock, InMemoryLogStore
from app.runtime.output import FLUSH_BYTES, HOLD_BYTES, RunOutput
from domain.errors import StoreUnavailable
from domain.logs import LogBatch, LogLine, LogStream
from domain.ports import LogStore
from domain.tasks import LogOnFull, TaskSpec

RUN = "01RUNOUTPUTTEST0000000000"
OUT = LogStream.STDOUT


def task(on_full: LogOnFull, max_size: int) -> TaskSpec:
    return TaskSpec(name="t", run="true", log_max_size=max_size, log_on_full=on_full)


class FlakyStore(LogStore):
    """An in-memory store that fails every call while ``down`` and never answers while
    ``hung``; ``fail_after_append`` stores the next batch and then raises (a lost reply)."""

    def __init__(self) -> None:
        self.inner = InMemoryLogStore()
        self.down = False
        self.hung = False
        self.fail_after_append = False
        self.failing_trims = 0
        self.appends = 0

    async def _gate(self) -> None:
        if self.hung:
            await asyncio.Event().wait()
        if self.down:
            raise StoreUnavailable("the database is down")

    async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None:
        await self._gate()
        await self.inner.append(run_id, lines)
        self.appends += 1
        if self.fail_after_append:
            self.fail_after_append = False
            raise StoreUnavailable("connection lost before the commit was acknowledged")

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]:
        await self._gate()
        return await self.inner.read(run_id, first, limit)

    async def stats(self, run_id: str) -> tuple[int, int]:
        await self._gate()
        return await self.inner.stats(run_id)

    async def trim(self, run_id: str, max_bytes: int) -> None:
        await self._gate()
        if self.failing_trims:
            self.failing_trims -= 1
            raise RuntimeError("deadlock detected")
        await self.inner.trim(run_id, max_bytes)

    async def delete(self, run_id: str) -> None:
        await self._gate()
        await self.inner.delete(run_id)


async def stored(store: LogStore) -> list[LogLine]:
    return await store.read(RUN, 0, 10**9)


def numbered(lines: list[LogLine]) -> list[int]:
    return [line.n for line in lines]


def texts(lines: list[LogLine], stream: LogStream = OUT) -> list[str]:
    return [line.text for line in lines if line.stream is stream]


def ten_byte_lines(count: int, start: int = 0) -> bytes:
    return b"".join(b"line-%05d\n" % i for i in range(start, start + count))


async def test_lines_of_both_streams_are_numbered_in_arrival_order_with_the_default_task() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock())
    await output.write(OUT, b"one\ntw")
    await output.write(LogStream.STDERR, b"err\n")
    await output.write(OUT, b"o\n")
    await output.system("runwarden: done")
    await output.close()
    lines = await stored(store)
    assert [(x.n, x.stream, x.text) for x in lines] == [
        (0, OUT, "one"),
        (1, LogStream.STDERR, "err"),
        (2, OUT, "two"),
        (3, LogStream.SYSTEM, "runwarden: done"),
    ]
    assert output.total_lines == 4
    assert (output.dropped_lines, output.lost_lines, output.overflowed) == (0, 0, False)


async def test_drop_new_keeps_the_head_and_says_once_that_the_rest_was_discarded() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_NEW, 100))
    await output.write(OUT, ten_byte_lines(25))
    await output.write(OUT, ten_byte_lines(5, start=25) + b"unfinished")
    await output.system("runwarden: exited")
    await output.close()
    lines = await stored(store)
    assert texts(lines) == [f"line-{i:05d}" for i in range(10)]
    system = texts(lines, LogStream.SYSTEM)
    assert system[0] == (
        "runwarden: output truncated at 100 bytes (log_max_size); further output discarded"
    )
    assert system[1] == "runwarden: exited"
    assert numbered(lines) == list(range(12)), "discarded lines take no numbers"
    assert output.dropped_lines == 21
    assert output.total_lines == 12
    assert not output.overflowed


async def test_output_exactly_filling_the_budget_is_kept_whole() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_NEW, 100))
    await output.write(OUT, ten_byte_lines(10))
    await output.flush()
    assert len(texts(await stored(store))) == 10
    assert texts(await stored(store), LogStream.SYSTEM) == []
    await output.write(OUT, b"x\n")
    await output.close()
    lines = await stored(store)
    assert len(texts(lines)) == 10
    assert len(texts(lines, LogStream.SYSTEM)) == 1
    assert output.dropped_lines == 1


async def test_budget_counts_utf8_bytes_not_characters() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_NEW, 10))
    await output.write(OUT, "éééé\n".encode())  # 4 characters, 8 bytes
    await output.write(OUT, "éé\n".encode())  # 4 more bytes: 12 > 10
    await output.close()
    assert texts(await stored(store)) == ["éééé"]
    assert output.dropped_lines == 1


async def test_drop_old_keeps_the_tail_with_absolute_numbers() -> None:
    store = InMemoryLogStore()
    budget = 8_000
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_OLD, budget))
    for start in range(0, 3_000, 100):
        await output.write(OUT, ten_byte_lines(100, start))
    await output.close()
    first, total = await store.stats(RUN)
    lines = await stored(store)
    assert first > 0
    assert numbered(lines) == list(range(first, total)), "numbers stay absolute and dense"
    kept = sum(len(line.text) for line in lines)
    assert budget // 2 < kept <= budget
    assert texts(lines)[-1] == "line-02999"
    assert lines[-1].n == 3_000, "3,000 output lines and one notice, numbered from 0"
    assert output.dropped_lines == 0


async def test_drop_old_says_once_that_old_output_was_discarded() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_OLD, 8_000))
    for start in range(0, 1_000, 100):
        await output.write(OUT, ten_byte_lines(100, start))
    await output.close()
    notices = texts(await stored(store), LogStream.SYSTEM)
    assert notices == ["runwarden: output exceeded 8.0 kB (log_max_size); oldest lines discarded"]


async def test_a_failed_trim_neither_stops_the_capture_nor_breaks_the_budget() -> None:
    store, clock = FlakyStore(), FakeClock()
    store.failing_trims = 1
    output = RunOutput(RUN, store, clock, task(LogOnFull.DROP_OLD, 8_000))
    for start in range(0, 3_000, 100):
        await output.write(OUT, ten_byte_lines(100, start))
        clock.advance(10)
    await output.close()
    lines = await stored(store)
    assert store.failing_trims == 0
    assert sum(len(line.text) for line in lines) <= 8_000
    assert texts(lines)[-1] == "line-02999"
    assert output.lost_lines == 0


async def test_kill_task_calls_on_overflow_once_and_discards_further_output() -> None:
    store = InMemoryLogStore()
    calls: list[None] = []
    output = RunOutput(
        RUN, store, FakeClock(), task(LogOnFull.KILL_TASK, 100), lambda: calls.append(None)
    )
    await output.write(OUT, ten_byte_lines(8))
    assert not output.overflowed
    await output.write(OUT, ten_byte_lines(8, start=8))
    await output.write(OUT, ten_byte_lines(8, start=16))
    assert output.overflowed
    assert len(calls) == 1
    await output.close()
    lines = await stored(store)
    assert texts(lines) == [f"line-{i:05d}" for i in range(10)]
    assert texts(lines, LogStream.SYSTEM) == [
        "runwarden: output exceeded 100 bytes (log_max_size); stopping the task"
    ]
    assert output.dropped_lines == 14
    assert len(calls) == 1


async def test_one_chunk_of_empty_lines_is_stored_before_write_returns() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock())
    await output.write(OUT, b"\n" * 65536)
    assert len(await stored(store)) == 65536


async def test_write_waits_for_a_slow_store_once_a_batch_is_full() -> None:
    release = asyncio.Event()

    class SlowStore(InMemoryLogStore):
        async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None:
            await release.wait()
            await super().append(run_id, lines)

    store = SlowStore()
    output = RunOutput(RUN, store, FakeClock())
    writing = asyncio.create_task(output.write(OUT, b"x" * 1000 + b"\n" * FLUSH_BYTES))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not writing.done(), "the process must wait on its pipe, not fill memory"
    release.set()
    await writing
    assert len(await stored(store)) == FLUSH_BYTES


async def test_output_held_during_an_outage_is_stored_in_order_once_the_store_is_back() -> None:
    store, clock = FlakyStore(), FakeClock()
    output = RunOutput(RUN, store, clock)
    store.down = True
    await output.write(OUT, ten_byte_lines(30_000))  # more than a batch: write tries, fails
    await output.system("runwarden: still here")
    await output.write(OUT, ten_byte_lines(10, start=30_000))
    store.down = False
    await output.flush()
    assert await store.inner.stats(RUN) == (0, 0), "no retry before the backoff has passed"
    clock.advance(10)
    await output.flush()
    lines = await stored(store)
    assert numbered(lines) == list(range(30_011))
    assert texts(lines) == [f"line-{i:05d}" for i in range(30_010)]
    assert texts(lines, LogStream.SYSTEM) == ["runwarden: still here"]
    assert output.lost_lines == 0


async def test_beyond_the_hold_bound_the_oldest_held_lines_are_lost_and_reported() -> None:
    store, clock = FlakyStore(), FakeClock()
    output = RunOutput(RUN, store, clock)
    store.down = True
    written = 0
    while written * 100 < 2 * HOLD_BYTES:
        await output.write(OUT, b"".join(b"%099d\n" % i for i in range(written, written + 500)))
        written += 500
    assert output.lost_lines > 0
    store.down = False
    clock.advance(10)
    await output.close()
    lines = await stored(store)
    assert numbered(lines) == list(range(len(lines))), "numbers stay dense across the loss"
    kept = [int(text) for text in texts(lines)]
    assert len(kept) + output.lost_lines == written
    assert kept == sorted(kept), "what is kept is in order"
    assert kept[-1] == written - 1, "the newest output survives"
    assert texts(lines, LogStream.SYSTEM) == [
        f"runwarden: {output.lost_lines} lines lost while the database was unavailable"
    ]


async def test_a_batch_stored_before_its_write_failed_is_not_stored_twice() -> None:
    store, clock = FlakyStore(), FakeClock()
    output = RunOutput(RUN, store, clock)
    store.fail_after_append = True
    await output.write(OUT, ten_byte_lines(30_000))
    await output.write(OUT, ten_byte_lines(10, start=30_000))
    clock.advance(10)
    await output.close()
    lines = await stored(store)
    assert numbered(lines) == list(range(30_010))
    assert texts(lines) == [f"line-{i:05d}" for i in range(30_010)]
    assert output.lost_lines == 0


async def test_close_stores_what_is_held_when_the_store_returns_in_time() -> None:
    store = FlakyStore()
    output = RunOutput(RUN, store, FakeClock(), close_timeout=30)
    store.down = True
    await output.write(OUT, ten_byte_lines(10))
    asyncio.get_running_loop().call_later(0.05, setattr, store, "down", False)
    await output.close()
    assert texts(await stored(store)) == [f"line-{i:05d}" for i in range(10)]
    assert output.lost_lines == 0


@pytest.mark.parametrize("failure", ["down", "hung"])
async def test_close_gives_up_on_a_dead_store_and_counts_what_is_lost(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore()
    output = RunOutput(RUN, store, FakeClock(), close_timeout=0.2)
    output.open()
    setattr(store, failure, True)
    await output.write(OUT, ten_byte_lines(10) + b"partial")
    with caplog.at_level(logging.WARNING):
        # The guard only turns a hang into a failure; close itself gives up after 0.2 s.
        await asyncio.wait_for(output.close(), timeout=30)
    assert output.lost_lines == 11
    assert "11 lines" in caplog.text
    assert await store.inner.stats(RUN) == (0, 0)


async def test_drop_old_with_a_small_budget_keeps_the_tail_of_one_big_chunk() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_OLD, 2_000))
    await output.write(OUT, ten_byte_lines(6_000))
    await output.close()
    first, total = await store.stats(RUN)
    lines = await stored(store)
    assert numbered(lines) == list(range(first, total))
    assert 1_000 < sum(len(line.text) for line in lines) <= 2_000
    assert texts(lines)[-1] == "line-05999"
    assert total == 6_001, "every line and one notice"


async def test_a_budget_crossed_inside_the_second_stream_read_keeps_the_lines_before() -> None:
    store = InMemoryLogStore()
    output = RunOutput(RUN, store, FakeClock(), task(LogOnFull.DROP_NEW, 35))
    await output.write(OUT, ten_byte_lines(2))
    await output.write(LogStream.STDERR, b"err-0000a\nerr-0000b\n")
    await output.close()
    lines = await stored(store)
    assert [(x.n, x.stream, x.text) for x in lines] == [
        (0, OUT, "line-00000"),
        (1, OUT, "line-00001"),
        (2, LogStream.STDERR, "err-0000a"),
        (
            3,
            LogStream.SYSTEM,
            "runwarden: output truncated at 35 bytes (log_max_size); further output discarded",
        ),
    ]
    assert output.dropped_lines == 1


async def test_one_batch_is_stored_while_the_next_fills_and_a_second_full_one_waits() -> None:
    release = asyncio.Event()
    appends: list[int] = []

    class SlowStore(InMemoryLogStore):
        async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None:
            appends.append(0)
            await release.wait()
            await super().append(run_id, lines)

    store = SlowStore()
    output = RunOutput(RUN, store, FakeClock())
    written = 0

    async def write_some() -> asyncio.Task[None]:
        nonlocal written
        writing = asyncio.create_task(output.write(OUT, ten_byte_lines(1000, written)))
        written += 1000
        for _ in range(5):
            await asyncio.sleep(0)
        return writing

    while not appends:
        assert (await write_some()).done(), "the first full batch is stored in the background"
    waiting = await write_some()
    while waiting.done() and written < FLUSH_BYTES:
        waiting = await write_some()
    assert not waiting.done(), "a second full batch waits for the first"
    assert len(appends) == 1
    release.set()
    await waiting
    await output.close()
    lines = await stored(store)
    assert texts(lines) == [f"line-{i:05d}" for i in range(written)]
    assert numbered(lines) == list(range(written))
