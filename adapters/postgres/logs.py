"""Run logs on PostgreSQL: one compact row per appended batch of lines.

A row of ``run_logs`` holds the lines ``first_n..last_n`` of one run as msgpack, in one
of two formats that ``decode_chunk`` tells apart by their first element:

- ``[2, [[count, ts in epoch microseconds, stream code, texts], ...]]``: the segments of a
  :class:`LogBatch`, where ``texts`` is the lines joined by ``\n`` or an array of them.
  Capture writes this one: its cost does not grow with the number of lines.
- ``[[n - first_n, ts, stream code, text], ...]``: a tuple per line (rows written before
  the columnar format; still read).

Reading a window
touches only the rows that overlap it, found through the primary key ``(run_id, first_n)``.
``run_log_meta`` keeps the counts so ``stats`` is one primary-key lookup, and the bytes of
text still stored (each row knows its own) so ``trim`` knows how much to drop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import ASYNC_COMMIT, autocommit, transaction
from adapters.postgres.run_listing import MAX_DEAD, ConnectionLost, driver_connection
from adapters.postgres.tables import run_log_meta, run_logs
from domain.errors import RunNotFound
from domain.logs import LogBatch, LogLine, LogSegment, LogStream, as_batch, text_size
from domain.ports import LogStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STREAM_CODES: dict[LogStream, int] = {
    LogStream.STDOUT: 0,
    LogStream.STDERR: 1,
    LogStream.SYSTEM: 2,
}
_STREAMS = {code: stream for stream, code in _STREAM_CODES.items()}

_TRIM_PAGE = 500
"""Chunks ``trim`` reads per query while it looks for where to cut."""

# The chunk and the counts in one statement (so one transaction, without BEGIN/COMMIT),
# committed without waiting for the WAL flush (see ``PostgresLogStore.append``).
_APPEND = sa.text(
    f"WITH async_commit AS (SELECT {ASYNC_COMMIT}), chunk AS ("
    " INSERT INTO run_logs (run_id, first_n, last_n, body, text_bytes)"
    " VALUES (:run_id, :first, :last, :body, :size))"
    " INSERT INTO run_log_meta AS m (run_id, first_available, total_lines, stored_bytes)"
    " SELECT :run_id, :first, :total, :size FROM async_commit"
    " ON CONFLICT (run_id) DO UPDATE SET"
    " total_lines = greatest(m.total_lines, EXCLUDED.total_lines),"
    " stored_bytes = m.stored_bytes + EXCLUDED.stored_bytes"
)

COLUMNAR = 2
"""The format marker of columnar chunk bodies."""

_Segment = tuple[int, int, int, str | tuple[str, ...]]
_Columnar = tuple[Literal[2], list[_Segment]]
_Row = tuple[int, int, int, str]
_encoder = msgspec.msgpack.Encoder()
_columnar = msgspec.msgpack.Decoder(_Columnar)
_per_line = msgspec.msgpack.Decoder(list[_Row])


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _MICROSECOND


def encode_chunk(batch: LogBatch) -> bytes:
    """One batch of lines as the bytes of a ``run_logs`` row (columnar format)."""
    return _encoder.encode(
        (
            COLUMNAR,
            [(s.count, _micros(s.ts), _STREAM_CODES[s.stream], s.texts) for s in batch.segments],
        )
    )


def decode_chunk(first_n: int, body: bytes) -> LogBatch:
    """The lines of one ``run_logs`` row, timestamps in UTC, in either format."""
    try:
        _, segments = _columnar.decode(body)
    except msgspec.ValidationError:
        return _decode_per_line(first_n, body)
    return LogBatch(
        first_n,
        [
            LogSegment(_STREAMS[code], _EPOCH + us * _MICROSECOND, count, texts, text_size(texts))
            for count, us, code, texts in segments
        ],
    )


def _decode_per_line(first_n: int, body: bytes) -> LogBatch:
    return LogBatch.of(
        [
            LogLine(first_n + offset, _EPOCH + us * _MICROSECOND, _STREAMS[code], text)
            for offset, us, code, text in _per_line.decode(body)
        ]
    )


def chunk_text(first_n: int, last_n: int, body: bytes, end: int, parts: list[str]) -> None:
    """Append the text of one ``run_logs`` row's lines before ``end`` to ``parts``, each
    line ending in a newline: joined segments go as they are, no object per line."""
    if last_n >= end:  # a row past the end of the download: cut it (never in practice)
        parts.append(decode_chunk(first_n, body).window(first_n, end - first_n).text())
        return
    try:
        _, segments = _columnar.decode(body)
    except msgspec.ValidationError:
        parts.extend(f"{text}\n" for *_, text in _per_line.decode(body))
        return
    for _, _, _, texts in segments:
        if isinstance(texts, str):
            parts.append(texts)
            parts.append("\n")
        else:
            parts.extend(f"{text}\n" for text in texts)


_RAW_ROWS = 64
_RAW_BYTES = 2_000_000
"""The raw download reads up to ``_RAW_ROWS`` rows per query, stopping at the first row
that begins past ``_RAW_BYTES`` of text (capture writes rows of up to ~1 MB, older ones
of 64 KiB), and sends them as one piece: memory stays a few MB a download."""
_RAW_READ = (
    "SELECT first_n, last_n, body FROM ("
    " SELECT first_n, last_n, body,"
    "  sum(text_bytes) OVER (ORDER BY first_n) - text_bytes AS before"
    " FROM run_logs WHERE run_id = $1 AND first_n >= $2 AND first_n < $3"
    " ORDER BY first_n LIMIT $4) AS r"
    " WHERE before < $5 ORDER BY first_n"
)


def _read_statement(
    run_id: str, first: int, limit: int, max_bytes: int | None = None
) -> sa.Select[int, bytes]:
    """The rows overlapping lines ``first..first+limit-1``, in order; with ``max_bytes``,
    only as many rows as begin before that much text has been read (at least one)."""
    # A window that begins among trimmed lines begins at the first available one instead
    # (GREATEST ignores the NULL of a log never written).
    available = (
        sa.select(run_log_meta.c.first_available)
        .where(run_log_meta.c.run_id == run_id)
        .scalar_subquery()
    )
    first_n_wanted = sa.func.greatest(max(first, 0), available)
    # The row holding that line starts at the greatest first_n <= it; from there the
    # primary key yields the overlapping rows in order.
    start = (
        sa.select(sa.func.max(run_logs.c.first_n))
        .where(run_logs.c.run_id == run_id, run_logs.c.first_n <= first_n_wanted)
        .scalar_subquery()
    )
    overlapping = (
        run_logs.c.run_id == run_id,
        run_logs.c.first_n >= sa.func.coalesce(start, first_n_wanted),
        run_logs.c.first_n < first_n_wanted + limit,
    )
    if max_bytes is None:
        return (
            sa.select(run_logs.c.first_n, run_logs.c.body)
            .where(*overlapping)
            .order_by(run_logs.c.first_n)
        )
    before = sa.func.sum(run_logs.c.text_bytes).over(order_by=run_logs.c.first_n)
    rows = (
        sa.select(
            run_logs.c.first_n,
            run_logs.c.body,
            (before - run_logs.c.text_bytes).label("before"),
        )
        .where(*overlapping)
        .subquery()
    )
    return (
        sa.select(rows.c.first_n, rows.c.body)
        .where(rows.c.before < max(max_bytes, 1))
        .order_by(rows.c.first_n)
    )


class PostgresLogStore(LogStore):
    """Run output lines in PostgreSQL. A run's log goes when the run is deleted."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None:
        """Store one batch of consecutive lines as one row; raise RunNotFound for no run.

        The commit does not wait for the WAL flush (a flush per chunk cost a fifth of the
        capture rate): the lines are visible at once, and on disk within the WAL writer's
        delay (~0.2 s). Recording a run's end waits for the flush, which covers every line
        stored before it, so only a crash of PostgreSQL itself while a run is still
        writing can lose its last fraction of a second of output; never an ended run's.
        """
        batch = as_batch(lines)
        count = batch.count
        if not count:
            return
        first, size = batch.first_n, batch.size
        params = {
            "run_id": run_id,
            "first": first,
            "last": first + count - 1,
            "total": first + count,
            "body": encode_chunk(batch),
            "size": size,
        }
        try:
            async with autocommit(self._engine) as conn:
                await conn.execute(_APPEND, params)
        except sa_exc.IntegrityError as error:
            if getattr(error.orig, "sqlstate", None) == "23503":  # foreign key: no such run
                raise RunNotFound(run_id) from error
            raise

    async def read_batch(
        self, run_id: str, first: int, limit: int, max_bytes: int | None = None
    ) -> LogBatch:
        """Up to ``limit`` lines with ``n >= first``, in order (fewer past ``max_bytes``)."""
        if limit <= 0:
            return LogBatch(max(first, 0))
        statement = _read_statement(run_id, first, limit, max_bytes)
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(statement)).all()
        if not rows:
            return LogBatch(max(first, 0))
        # The rows are consecutive; the first begins at or before the window (or at the
        # first available line when the window begins among trimmed ones).
        segments: list[LogSegment] = []
        for first_n, body in rows:
            segments.extend(decode_chunk(first_n, body).segments)
        whole = LogBatch(rows[0][0], segments)
        return whole.window(max(first, whole.first_n), limit)

    async def raw_text(self, run_id: str, end: int) -> AsyncIterator[bytes]:
        """The lines before ``end`` as text, about ``_RAW_BYTES`` of whole rows per query.

        Rows before the first available line are gone (a trim deletes whole rows), so
        reading from line 0 starts at the first available one. Each query takes a pooled
        connection only while it runs: a slow client holds none.
        """
        first = 0
        while first < end:
            rows = await self._raw_rows(run_id, first, end)
            if not rows:
                return
            parts: list[str] = []
            for first_n, last_n, body in rows:
                chunk_text(first_n, last_n, body, end, parts)
            yield "".join(parts).encode()
            first = rows[-1][1] + 1

    async def _raw_rows(self, run_id: str, first: int, end: int) -> list[asyncpg.Record]:
        # A read is idempotent: one that meets a dead pooled connection (a restarted server
        # leaves them all dead) is tried on the next one, as the run listing does.
        for _ in range(MAX_DEAD):
            try:
                return await self._fetch_raw_rows(run_id, first, end)
            except ConnectionLost:
                continue
        return await self._fetch_raw_rows(run_id, first, end)

    async def _fetch_raw_rows(self, run_id: str, first: int, end: int) -> list[asyncpg.Record]:
        async with driver_connection(self._engine) as conn:
            rows: list[asyncpg.Record] = await conn.fetch(
                _RAW_READ, run_id, first, end, _RAW_ROWS, _RAW_BYTES
            )
        return rows

    async def stats(self, run_id: str) -> tuple[int, int]:
        """(first available n, total lines appended); (0, 0) when none."""
        stmt = sa.select(run_log_meta.c.first_available, run_log_meta.c.total_lines).where(
            run_log_meta.c.run_id == run_id
        )
        async with autocommit(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def trim(self, run_id: str, max_bytes: int) -> None:
        """Drop the oldest chunks until at most ``max_bytes`` of text remain."""
        lock_meta = (
            sa.select(run_log_meta.c.stored_bytes, run_log_meta.c.total_lines)
            .where(run_log_meta.c.run_id == run_id)
            .with_for_update()
        )
        async with transaction(self._engine) as conn:
            # The row lock orders this trim with the byte count of a concurrent append.
            meta = (await conn.execute(lock_meta)).first()
            if meta is None or meta.stored_bytes <= max_bytes:
                return
            excess = meta.stored_bytes - max(max_bytes, 0)
            dropped, last_dropped = 0, -1
            while dropped < excess:
                # Oldest first, a page at a time: a long log need not be read whole.
                page = (
                    sa.select(run_logs.c.first_n, run_logs.c.text_bytes)
                    .where(run_logs.c.run_id == run_id, run_logs.c.first_n > last_dropped)
                    .order_by(run_logs.c.first_n)
                    .limit(_TRIM_PAGE)
                )
                rows = (await conn.execute(page)).all()
                for first_n, size in rows:
                    if dropped >= excess:
                        break
                    dropped, last_dropped = dropped + int(size), int(first_n)
                if len(rows) < _TRIM_PAGE:
                    break
            await conn.execute(
                run_logs.delete().where(
                    run_logs.c.run_id == run_id, run_logs.c.first_n <= last_dropped
                )
            )
            oldest_kept = (
                sa.select(sa.func.min(run_logs.c.first_n))
                .where(run_logs.c.run_id == run_id)
                .scalar_subquery()
            )
            await conn.execute(
                run_log_meta.update()
                .where(run_log_meta.c.run_id == run_id)
                .values(
                    first_available=sa.func.coalesce(oldest_kept, run_log_meta.c.total_lines),
                    # Nothing left counts as nothing stored, whatever older rows claimed.
                    stored_bytes=sa.case(
                        (oldest_kept.is_(None), 0), else_=meta.stored_bytes - dropped
                    ),
                )
            )

    async def delete(self, run_id: str) -> None:
        """Remove every line of the run."""
        async with transaction(self._engine) as conn:
            await conn.execute(run_logs.delete().where(run_logs.c.run_id == run_id))
            await conn.execute(run_log_meta.delete().where(run_log_meta.c.run_id == run_id))
