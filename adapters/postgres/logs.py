"""Run logs on PostgreSQL: one compact row per appended batch of lines.

A row of ``run_logs`` holds the lines ``first_n..last_n`` of one run, encoded as a msgpack
array of ``[n - first_n, ts in epoch microseconds, stream code, text]``. Reading a window
touches only the rows that overlap it, found through the primary key ``(run_id, first_n)``.
``run_log_meta`` keeps the counts so ``stats`` is one primary-key lookup, and the bytes of
text still stored (each row knows its own) so ``trim`` knows how much to drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import autocommit, transaction
from adapters.postgres.tables import run_log_meta, run_logs
from domain.errors import RunNotFound
from domain.logs import LogLine, LogStream
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

# The chunk and the counts in one statement (so one transaction, without BEGIN/COMMIT).
_APPEND = sa.text(
    "WITH chunk AS ("
    " INSERT INTO run_logs (run_id, first_n, last_n, body, text_bytes)"
    " VALUES (:run_id, :first, :last, :body, :size))"
    " INSERT INTO run_log_meta AS m (run_id, first_available, total_lines, stored_bytes)"
    " VALUES (:run_id, :first, :total, :size)"
    " ON CONFLICT (run_id) DO UPDATE SET"
    " total_lines = greatest(m.total_lines, EXCLUDED.total_lines),"
    " stored_bytes = m.stored_bytes + EXCLUDED.stored_bytes"
)

_Row = tuple[int, int, int, str]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[_Row])


def encode_chunk(lines: Sequence[LogLine]) -> bytes:
    """One batch of lines as the bytes of a ``run_logs`` row."""
    first = lines[0].n
    return _encoder.encode(
        [
            (
                line.n - first,
                (line.ts - _EPOCH) // _MICROSECOND,
                _STREAM_CODES[line.stream],
                line.text,
            )
            for line in lines
        ]
    )


def decode_chunk(first_n: int, body: bytes) -> list[LogLine]:
    """The lines of one ``run_logs`` row, timestamps in UTC."""
    return [
        LogLine(first_n + offset, _EPOCH + us * _MICROSECOND, _STREAMS[code], text)
        for offset, us, code, text in _decoder.decode(body)
    ]


def text_bytes(lines: Sequence[LogLine]) -> int:
    """What ``lines`` weigh against a log budget: the UTF-8 bytes of their texts."""
    return sum(len(line.text.encode()) for line in lines)


class PostgresLogStore(LogStore):
    """Run output lines in PostgreSQL. A run's log goes when the run is deleted."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> None:
        """Store one batch of consecutive lines as one row; raise RunNotFound for no run."""
        if not lines:
            return
        first, last = lines[0].n, lines[-1].n
        size = text_bytes(lines)
        params = {
            "run_id": run_id,
            "first": first,
            "last": last,
            "total": last + 1,
            "body": encode_chunk(lines),
            "size": size,
        }
        try:
            async with autocommit(self._engine) as conn:
                await conn.execute(_APPEND, params)
        except sa_exc.IntegrityError as error:
            if getattr(error.orig, "sqlstate", None) == "23503":  # foreign key: no such run
                raise RunNotFound(run_id) from error
            raise

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]:
        """Up to ``limit`` lines with ``n >= first``, in order."""
        if limit <= 0:
            return []
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
        stmt = (
            sa.select(run_logs.c.first_n, run_logs.c.body)
            .where(
                run_logs.c.run_id == run_id,
                run_logs.c.first_n >= sa.func.coalesce(start, first_n_wanted),
                run_logs.c.first_n < first_n_wanted + limit,
            )
            .order_by(run_logs.c.first_n)
        )
        async with autocommit(self._engine) as conn:
            rows = (await conn.execute(stmt)).all()
        found: list[LogLine] = []
        for first_n, body in rows:
            found.extend(line for line in decode_chunk(first_n, body) if line.n >= first)
        return found[:limit]

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
