"""The LogStore contract, run against the in-memory fake and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.logs import LogLine, LogStream
from tests.contract.conftest import LogSubject

T0 = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
TEXTS = (
    "plain",
    "",
    "héllo wörld",
    "日本語のログ",
    "emoji 🚀 ok",
    "tab\tand \\ backslash",
    "x" * 5000,
)
STREAMS = (LogStream.STDOUT, LogStream.STDERR, LogStream.SYSTEM)


def batch(start: int, count: int) -> list[LogLine]:
    """``count`` lines numbered from ``start``, cycling through texts and streams."""
    return [
        LogLine(
            n,
            T0 + timedelta(seconds=n, microseconds=n),
            STREAMS[n % len(STREAMS)],
            TEXTS[n % len(TEXTS)],
        )
        for n in range(start, start + count)
    ]


async def test_appended_lines_read_back_exactly(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    lines = batch(0, 5) + batch(5, 1) + batch(6, 10)
    for part in (lines[:5], lines[5:6], lines[6:]):
        await logs.store.append(run_id, part)
    got = await logs.store.read(run_id, 0, 100)
    assert got == lines
    assert all(line.ts.utcoffset() == timedelta(0) for line in got)
    assert {type(line.stream) for line in got} == {LogStream}


async def test_reads_return_windows_across_batches(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    for start in range(0, 150, 3):
        await logs.store.append(run_id, batch(start, 3))
    assert [line.n for line in await logs.store.read(run_id, 77, 10)] == list(range(77, 87))
    assert [line.n for line in await logs.store.read(run_id, 3, 1)] == [3]
    assert [line.n for line in await logs.store.read(run_id, 145, 10)] == list(range(145, 150))
    assert [line.n for line in await logs.store.read(run_id, -5, 3)] == [0, 1, 2]
    assert await logs.store.read(run_id, 150, 10) == []
    assert await logs.store.read(run_id, 0, 0) == []


async def test_stats_count_lines_and_start_at_zero_for_an_empty_log(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    assert await logs.store.stats(run_id) == (0, 0)
    await logs.store.append(run_id, batch(0, 4))
    await logs.store.append(run_id, [])
    await logs.store.append(run_id, batch(4, 3))
    assert await logs.store.stats(run_id) == (0, 7)


async def test_delete_removes_one_runs_lines_only(logs: LogSubject) -> None:
    doomed, kept = await logs.new_run(), await logs.new_run()
    await logs.store.append(doomed, batch(0, 3))
    await logs.store.append(kept, batch(0, 2))
    await logs.store.delete(doomed)
    assert await logs.store.read(doomed, 0, 10) == []
    assert await logs.store.stats(doomed) == (0, 0)
    assert await logs.store.read(kept, 0, 10) == batch(0, 2)
    assert await logs.store.stats(kept) == (0, 2)


async def test_a_log_never_written_reads_empty(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    assert await logs.store.read(run_id, 0, 1000) == []
    await logs.store.delete(run_id)


def sized(start: int, count: int, text: str) -> list[LogLine]:
    """``count`` lines numbered from ``start``, each with ``text``."""
    return [LogLine(n, T0, LogStream.STDOUT, text) for n in range(start, start + count)]


async def test_trim_drops_whole_oldest_batches_until_the_text_fits(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    for start in range(0, 12, 3):
        await logs.store.append(run_id, sized(start, 3, "a" * 10))  # 30 bytes a batch
    await logs.store.trim(run_id, 70)
    assert await logs.store.stats(run_id) == (6, 12)
    assert [line.n for line in await logs.store.read(run_id, 0, 100)] == list(range(6, 12))
    assert [line.n for line in await logs.store.read(run_id, 7, 2)] == [7, 8]
    await logs.store.trim(run_id, 60)
    assert await logs.store.stats(run_id) == (6, 12)


async def test_a_read_from_before_the_first_available_line_starts_there(
    logs: LogSubject,
) -> None:
    run_id = await logs.new_run()
    for start in range(0, 12, 3):
        await logs.store.append(run_id, sized(start, 3, "a" * 10))
    await logs.store.trim(run_id, 30)
    assert await logs.store.stats(run_id) == (9, 12)
    # Fewer lines asked for than were dropped: the window still starts at line 9.
    assert [line.n for line in await logs.store.read(run_id, 0, 2)] == [9, 10]
    assert [line.n for line in await logs.store.read(run_id, -100, 5)] == [9, 10, 11]


async def test_trim_counts_utf8_bytes_not_characters(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    await logs.store.append(run_id, sized(0, 1, "日本"))  # 2 characters, 6 bytes
    await logs.store.append(run_id, sized(1, 1, "héllo"))  # 5 characters, 6 bytes
    await logs.store.trim(run_id, 11)
    assert await logs.store.read(run_id, 0, 10) == sized(1, 1, "héllo")
    assert await logs.store.stats(run_id) == (1, 2)


async def test_a_log_trimmed_to_nothing_continues_where_it_stopped(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    await logs.store.append(run_id, sized(0, 4, "xyz"))
    await logs.store.append(run_id, sized(4, 2, "uv"))
    await logs.store.trim(run_id, 0)
    assert await logs.store.read(run_id, 0, 10) == []
    assert await logs.store.stats(run_id) == (6, 6)
    await logs.store.append(run_id, sized(6, 2, "again"))
    assert await logs.store.stats(run_id) == (6, 8)
    assert await logs.store.read(run_id, 0, 10) == sized(6, 2, "again")
    # The bytes of the dropped batches no longer count against the budget.
    await logs.store.trim(run_id, 10)
    assert await logs.store.stats(run_id) == (6, 8)


async def test_trimming_a_log_never_written_changes_nothing(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    await logs.store.trim(run_id, 0)
    assert await logs.store.stats(run_id) == (0, 0)
