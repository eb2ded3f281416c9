"""The LogStore contract, run against the in-memory fake and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.logs import PostgresLogStore, decode_chunk, encode_chunk
from adapters.postgres.runs import PostgresRunRepository
from domain.logs import LineAssembler, LogBatch, LogLine, LogSegment, LogStream
from domain.run import Run, TriggeredBy
from tests.contract.conftest import LogSubject, new_id

T0 = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def captured(first: int, chunks: int, lines_each: int) -> LogBatch:
    """What capture hands a store: joined segments of several reads, of both streams."""
    assembler = LineAssembler(next_n=first)
    segments: list[LogSegment] = []
    for k in range(chunks):
        stream = STREAMS[k % 2]
        data = "".join(f"{TEXTS[(k + i) % 6]} {k}.{i}\n" for i in range(lines_each)).encode()
        segments += assembler.feed(stream, data, T0 + timedelta(seconds=k)).segments
    segments += assembler.system("runwarden: a system line\nwith a newline", T0).segments
    return LogBatch(first, segments)


async def test_columnar_batches_read_back_line_for_line_in_any_window(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    batches = [captured(0, 3, 7), captured(22, 2, 5), captured(33, 4, 1)]
    for batch in batches:
        await logs.store.append(run_id, batch)
    everything = [line for batch in batches for line in batch.lines()]
    assert await logs.store.read(run_id, 0, 1000) == everything
    assert await logs.store.stats(run_id) == (0, 38)
    for first in (0, 1, 6, 20, 21, 22, 30, 37, 38):
        for limit in (1, 4, 9, 30):
            window = await logs.store.read_batch(run_id, first, limit)
            assert window.lines() == everything[first : first + limit]
            assert window.size == sum(len(x.text.encode()) for x in window.lines())


async def test_a_batch_counts_its_utf8_text_against_the_budget(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    batch = captured(0, 2, 3)
    await logs.store.append(run_id, batch)
    await logs.store.trim(run_id, batch.size)
    assert await logs.store.stats(run_id) == (0, batch.end)
    await logs.store.trim(run_id, batch.size - 1)
    assert await logs.store.stats(run_id) == (batch.end, batch.end)


def test_chunk_bodies_round_trip_in_the_columnar_format() -> None:
    batch = captured(5, 3, 4)
    decoded = decode_chunk(5, encode_chunk(batch))
    assert decoded.lines() == batch.lines()
    assert [s.texts for s in decoded.segments] == [s.texts for s in batch.segments]
    assert decoded.size == batch.size


def test_chunk_bodies_of_the_per_line_format_still_decode() -> None:
    lines = batch(7, 9)
    old = msgspec.msgpack.encode(
        [
            (
                line.n - 7,
                (line.ts - EPOCH) // timedelta(microseconds=1),
                STREAMS.index(line.stream),
                line.text,
            )
            for line in lines
        ]
    )
    assert decode_chunk(7, old).lines() == lines


async def test_rows_of_the_per_line_format_read_back_beside_columnar_ones(
    engine: AsyncEngine,
) -> None:
    store = PostgresLogStore(engine)
    run = Run(new_id(), "logged", datetime(2026, 1, 1, tzinfo=UTC), TriggeredBy.API)
    await PostgresRunRepository(engine).add(run)
    old = batch(0, 5)
    body = msgspec.msgpack.encode(
        [
            (x.n, (x.ts - EPOCH) // timedelta(microseconds=1), STREAMS.index(x.stream), x.text)
            for x in old
        ]
    )
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO run_logs (run_id, first_n, last_n, body, text_bytes)"
                " VALUES (:r, 0, 4, :b, 0);"
            ),
            {"r": run.id, "b": body},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO run_log_meta (run_id, first_available, total_lines, stored_bytes)"
                " VALUES (:r, 0, 5, 0)"
            ),
            {"r": run.id},
        )
    new = captured(5, 2, 3)
    await store.append(run.id, new)
    assert await store.read(run.id, 0, 100) == old + new.lines()
    assert await store.read(run.id, 3, 4) == (old + new.lines())[3:7]


async def test_chunks_are_compressed_with_lz4_where_the_server_has_it(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        has_lz4 = await conn.scalar(
            sa.text(
                "SELECT 'lz4' = ANY (enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
        method = await conn.scalar(
            sa.text(
                "SELECT attcompression::text FROM pg_attribute"
                " WHERE attrelid = 'run_logs'::regclass AND attname = 'body'"
            )
        )
    assert method == ("l" if has_lz4 else "")


async def test_a_read_capped_by_bytes_stops_at_a_batch_boundary(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    sizes = []
    for start in range(0, 40, 4):
        part = batch(start, 4)
        sizes.append(sum(len(line.text.encode()) for line in part))
        await logs.store.append(run_id, part)
    whole = await logs.store.read(run_id, 0, 100)
    # The cap is reached inside the second batch: the third (which begins past it) is left.
    capped = await logs.store.read_batch(run_id, 0, 100, max_bytes=sizes[0] + 1)
    assert capped.lines() == whole[:8]
    # At least one batch, however small the cap; a cap never cuts a batch.
    one = await logs.store.read_batch(run_id, 5, 100, max_bytes=1)
    assert one.lines() == whole[5:8]
    # The line limit still applies, and no cap reads everything.
    assert (await logs.store.read_batch(run_id, 3, 6, max_bytes=10**9)).lines() == whole[3:9]
    assert (await logs.store.read_batch(run_id, 0, 100)).lines() == whole


async def test_the_raw_text_is_every_available_line_before_the_end(logs: LogSubject) -> None:
    run_id = await logs.new_run()
    for start in range(0, 3000, 500):
        await logs.store.append(run_id, batch(start, 500))
    lines = await logs.store.read(run_id, 0, 10_000)
    text = b"".join([piece async for piece in logs.store.raw_text(run_id, 3000)])
    assert text == "".join(f"{line.text}\n" for line in lines).encode()
    head = b"".join([piece async for piece in logs.store.raw_text(run_id, 1000)])
    assert head == "".join(f"{line.text}\n" for line in lines[:1000]).encode()
    await logs.store.trim(run_id, 4 * sum(len(t.encode()) for t in TEXTS) * 100)
    first, _ = await logs.store.stats(run_id)
    assert first > 0
    trimmed = b"".join([piece async for piece in logs.store.raw_text(run_id, 3000)])
    assert trimmed == "".join(f"{line.text}\n" for line in lines[first:]).encode()
