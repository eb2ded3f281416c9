"""Run logs on PostgreSQL: one compact row per appended batch of lines.

A row of ``run_logs`` holds the lines ``first_n..last_n`` of one run, encoded as a msgpack
array of ``[n - first_n, ts in epoch microseconds, stream code, text]``. Reading a window
touches only the rows that overlap it, found through the primary key ``(run_id, first_n)``.
``run_log_meta`` keeps the counts so ``stats`` is one primary-key lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.database import transaction
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


class PostgresLogStore(LogStore):
    """Run output lines in PostgreSQL. A run's log goes when the run is deleted."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> None:
        """Store one batch of consecutive lines as one row; raise RunNotFound for no run."""
        if not lines:
            return
        first, last = lines[0].n, lines[-1].n
        meta = pg_insert(run_log_meta).values(
            run_id=run_id, first_available=first, total_lines=last + 1
        )
        meta = meta.on_conflict_do_update(
            index_elements=[run_log_meta.c.run_id],
            set_={"total_lines": sa.func.greatest(run_log_meta.c.total_lines, last + 1)},
        )
        try:
            async with transaction(self._engine) as conn:
                await conn.execute(
                    run_logs.insert().values(
                        run_id=run_id, first_n=first, last_n=last, body=encode_chunk(lines)
                    )
                )
                await conn.execute(meta)
        except sa_exc.IntegrityError as error:
            if getattr(error.orig, "sqlstate", None) == "23503":  # foreign key: no such run
                raise RunNotFound(run_id) from error
            raise

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]:
        """Up to ``limit`` lines with ``n >= first``, in order."""
        if limit <= 0:
            return []
        first = max(first, 0)
        end = first + limit
        # The row holding line ``first`` starts at the greatest first_n <= first; from there
        # the primary key yields the overlapping rows in order.
        start = (
            sa.select(sa.func.max(run_logs.c.first_n))
            .where(run_logs.c.run_id == run_id, run_logs.c.first_n <= first)
            .scalar_subquery()
        )
        stmt = (
            sa.select(run_logs.c.first_n, run_logs.c.body)
            .where(
                run_logs.c.run_id == run_id,
                run_logs.c.first_n >= sa.func.coalesce(start, first),
                run_logs.c.first_n < end,
            )
            .order_by(run_logs.c.first_n)
        )
        async with transaction(self._engine) as conn:
            rows = (await conn.execute(stmt)).all()
        found: list[LogLine] = []
        for first_n, body in rows:
            found.extend(line for line in decode_chunk(first_n, body) if first <= line.n < end)
        return found[:limit]

    async def stats(self, run_id: str) -> tuple[int, int]:
        """(first available n, total lines appended); (0, 0) when none."""
        stmt = sa.select(run_log_meta.c.first_available, run_log_meta.c.total_lines).where(
            run_log_meta.c.run_id == run_id
        )
        async with transaction(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def delete(self, run_id: str) -> None:
        """Remove every line of the run."""
        async with transaction(self._engine) as conn:
            await conn.execute(run_logs.delete().where(run_logs.c.run_id == run_id))
            await conn.execute(run_log_meta.delete().where(run_log_meta.c.run_id == run_id))
