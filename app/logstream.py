"""Reading a run's log over HTTP: pages, the raw download and the live SSE follow.

Everything here pulls from the log store at the reader's own pace; nothing is pushed to
readers by the run. A slow or stalled client therefore never slows a run or the daemon: its
stream waits on its socket holding at most one batch of lines, and takes a database
connection only for the moment of each read. Because the store is the only source, a
stream follows a run that another daemon sharing the database executes just the same.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from app import schemas
from app.config import positive_from_env
from app.presenters import timestamp
from domain.errors import StoreUnavailable
from domain.logs import LogBatch
from domain.ports import LogStore, RunRepository
from domain.run import Run, RunStatus

MAX_LINE_NUMBER = 2**53 - 1
"""Line numbers and ``from`` stay within what JSON clients represent exactly."""
STREAM_BATCH = 20_000
"""Lines a stream reads per query at most."""
STREAM_BYTES = 1_000_000
"""Text a stream reads per query: it stops at the first stored chunk beginning past this,
so it holds at most about this much (plus one chunk) of lines in memory."""
POLL_INTERVAL = 0.2
"""Seconds a caught-up stream waits before asking the store for new lines."""
KEEPALIVE_ENV = "RUNWARDEN_LOG_KEEPALIVE"
DEFAULT_KEEPALIVE = 15.0
"""Seconds of silence after which a stream sends a ``: keep-alive`` comment."""
PER_CLIENT_STREAMS = 8
TOTAL_STREAMS = 256
"""Concurrent log streams allowed per client address and in total."""
RETRY_AFTER_SECONDS = 5

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def keepalive_interval() -> float:
    """The keep-alive period: ``RUNWARDEN_LOG_KEEPALIVE`` seconds if set (tests), else 15."""
    return positive_from_env(KEEPALIVE_ENV, DEFAULT_KEEPALIVE)


def line_bodies(batch: LogBatch, schema: str = "") -> list[schemas.LogLine]:
    """The wire form of stored lines; ``schema`` is the URL of the LogLine schema.

    Timestamps are formatted once per segment (the lines of one read share theirs).
    """
    bodies: list[schemas.LogLine] = []
    n = batch.first_n
    for segment in batch.segments:
        ts, stream = timestamp(segment.ts), segment.stream.value
        bodies.extend(
            schemas.LogLine(schema=schema, n=i, ts=ts, stream=stream, text=text)  # type: ignore[arg-type]
            for i, text in enumerate(segment.lines(), n)
        )
        n += segment.count
    return bodies


@dataclass(frozen=True, slots=True)
class Window:
    """A page of the log as the store had it, before it gets its ``$schema``."""

    lines: LogBatch
    first_available: int
    total_lines: int
    finalized: bool


async def read_window(logs: LogStore, run: Run, start: int, limit: int) -> Window:
    """Up to ``limit`` lines from ``start``; a negative ``start`` counts from the end.

    ``run`` must have been read before this call: if it had ended then, its output was
    complete (output is stored before a run is recorded ended), so ``finalized`` is sound.
    """
    first_available, total = await logs.stats(run.id)
    first = total + start if start < 0 else start
    first = max(first, first_available, 0)
    lines = await logs.read_batch(run.id, first, limit) if first < total else LogBatch(first)
    if lines.count:
        # Lines appended between the two reads: the count covers what is shown.
        total = max(total, lines.end)
    return Window(lines, first_available, total, run.status is RunStatus.ENDED)


def raw_chunks(logs: LogStore, run_id: str, end: int) -> AsyncIterator[bytes]:
    """The stored lines before ``end`` as UTF-8 text, in pieces of bounded size."""
    return logs.raw_text(run_id, end)


def _line_template(schema: str, ts: str, stream: str) -> bytes:
    """The ``line`` event of one segment's lines, less the number (twice) and the text.

    The same bytes msgspec writes for :class:`schemas.LogLine` (fields in declaration
    order, the same string escapes), put together once per segment instead of per line.
    """
    head = b'{"$schema":%s,"n":' % _encoder.encode(schema)
    tail = b',"ts":%s,"stream":%s,"text":' % (_encoder.encode(ts), _encoder.encode(stream))
    # A "%" in the schema URL or elsewhere must survive the formatting below.
    head, tail = head.replace(b"%", b"%%"), tail.replace(b"%", b"%%")
    return b"id: %%d\nevent: line\ndata: %s%%d%s%%b}\n\n" % (head, tail)


def line_events(batch: LogBatch, schema: str = "") -> bytes:
    """``line`` events for a batch, ids = line numbers, data = the line as JSON.

    One template per segment; per line only the number and the text's JSON are formatted.
    """
    encode = _encoder.encode
    out: list[bytes] = []
    n = batch.first_n
    for segment in batch.segments:
        template = _line_template(schema, timestamp(segment.ts), segment.stream.value)
        out.extend([template % (i, i, encode(text)) for i, text in enumerate(segment.lines(), n)])
        n += segment.count
    return b"".join(out)


def done_event(final_line: int, run: Run, schema: str = "") -> bytes:
    """The last event of a stream: the last line number (-1 if none) and how the run ended."""
    status = run.end_reason.value if run.end_reason else run.status.value
    data = _encoder.encode(
        schemas.LogStreamDone(schema=schema, final_line=final_line, status=status)
    )
    return b"event: done\ndata: %s\n\n" % data


KEEPALIVE_COMMENT = b": keep-alive\n\n"


@dataclass
class StreamLimiter:
    """Counts open log streams per client address and in total; module-wide."""

    per_client: int = PER_CLIENT_STREAMS
    total: int = TOTAL_STREAMS
    _open: dict[str, int] = field(default_factory=dict)

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def acquire(self, client: str) -> Lease | None:
        """A lease on one stream slot for ``client``, or None if a limit is reached."""
        if self._open.get(client, 0) >= self.per_client or self.open_streams >= self.total:
            return None
        self._open[client] = self._open.get(client, 0) + 1
        return Lease(self, client)

    def _release(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


@dataclass(eq=False)
class Lease:
    """One stream slot; released once, however many times ``release`` is called."""

    limiter: StreamLimiter
    client: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limiter._release(self.client)

    def bind(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Release when ``stream`` is finished or collected, even if it never started."""
        weakref.finalize(stream, self.release)
        return stream


LIMITER = StreamLimiter()

_stopping = False
STOPPING_COMMENT = b": disconnected: the daemon is shutting down\n\n"


def stop_streams() -> None:
    """Make every log stream end within one poll: the daemon is shutting down.

    Meant for the server's exit signal handler (sync, no awaiting), so open streams do
    not hold up a graceful shutdown; clients resume elsewhere with ``Last-Event-ID``.
    """
    global _stopping
    _stopping = True


async def follow(
    repo: RunRepository,
    logs: LogStore,
    run_id: str,
    start: int,
    lease: Lease,
    keepalive: float,
    poll: float = POLL_INTERVAL,
    base_url: str = "",
) -> AsyncIterator[bytes]:
    """SSE bytes: every line from ``start`` on, live, then ``done`` once the run ended.

    Line numbers only grow, so asking the store for ``n >= next`` after each batch yields
    every line once, with no gap, however the reads fall against the run's appends. The run
    is read before the lines: if it had ended by then, that read got the last of them.
    Ends without ``done`` if the run is deleted, the store fails or the daemon shuts down
    (:func:`stop_streams`); the client resumes with ``Last-Event-ID``.
    """
    line_schema = f"{base_url}/schemas/LogLine.json" if base_url else ""
    done_schema = f"{base_url}/schemas/LogStreamDone.json" if base_url else ""
    loop = asyncio.get_running_loop()
    next_n = start
    quiet_since = loop.time()
    try:
        while True:
            if _stopping:
                yield STOPPING_COMMENT
                return
            run = await repo.get(run_id)
            if run is None:
                return
            # Every line stored by now, batch after batch, before the run is read again.
            while True:
                batch = await logs.read_batch(run_id, next_n, STREAM_BATCH, STREAM_BYTES)
                if not batch.count:
                    break
                next_n = batch.end
                yield line_events(batch, line_schema)
                quiet_since = loop.time()
                if _stopping:
                    break
            if _stopping:
                continue
            if run.status is RunStatus.ENDED:
                _, total = await logs.stats(run_id)
                yield done_event(total - 1, run, done_schema)
                return
            if loop.time() - quiet_since >= keepalive:
                yield KEEPALIVE_COMMENT
                quiet_since = loop.time()
            await asyncio.sleep(poll)
    except StoreUnavailable as exc:
        log.warning("log stream of run %s ended: %s", run_id, exc)
    finally:
        lease.release()
