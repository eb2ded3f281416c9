"""The raw download and the SSE stream, byte for byte, against the first read path.

Issue 14 made both faster (no Python work per line for ``raw``, many lines per write for
the stream). These tests pin what they send: for a log written straight into the store
with fixed timestamps (ANSI escapes, replaced invalid UTF-8, control characters, a very
long line, joined and one-per-line segments, lines holding a newline, system lines,
legacy per-line chunks, a ``drop_old`` trim), the bytes must equal both the digests taken
with the code before the change and a reference implementation of that code (below) run
over the store's ``read_batch``; for logs captured from real processes (invalid UTF-8, a
line split at the 64 KiB cap, a timeout's system line, a drop_old log), the reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from adapters.postgres.database import create_engine
from adapters.postgres.logs import PostgresLogStore
from app import schemas
from app.presenters import timestamp
from domain.logs import LogBatch, LogSegment, LogStream
from tests.api.logs_support import trigger, wait_ended
from tests.support.daemon import DaemonProcess, running_daemon

CONFIG = """
[tasks.blank]
run = "true"

[tasks.mixed]
run = '''
printf '\\033[1;31mred\\033[0m plain\\n'
printf 'bad utf8: \\377\\376 end\\n'
printf 'to stderr\\n' >&2
head -c 200000 /dev/zero | tr '\\0' 'x'; echo
printf 'no newline at the end'
'''

[tasks.slow]
run = "echo before; sleep 30"
timeout = "1s"
graceful_stop = "1s"

[tasks.trimmed]
run = "seq 1 20000"
log_max_size = "10kb"
log_on_full = "drop_old"
"""

# Taken with the read path before issue 14 (commit a04151e) for the synthetic log below.
GOLDEN_RAW = ("bd8a1d3feec164c54c172cc14fd2b5cad8c4c80b4861d86e8c95669154bb7590", 517764)
GOLDEN_STREAM = ("ec5b68bc24940e74cd964f95ab7dd21958dd4f8922148b244b5337efec6a9c99", 898406)

T0 = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
_STREAM_CODES = {LogStream.STDOUT: 0, LogStream.STDERR: 1, LogStream.SYSTEM: 2}
_encoder = msgspec.json.Encoder()


# -- The reference: the read path as it was before issue 14 (app/logstream.py). --


def ref_text(batch: LogBatch) -> str:
    parts: list[str] = []
    for segment in batch.segments:
        if isinstance(segment.texts, str):
            parts.append(segment.texts)
            parts.append("\n")
        else:
            parts.extend(f"{text}\n" for text in segment.texts)
    return "".join(parts)


def ref_line_events(batch: LogBatch, schema: str) -> bytes:
    out: list[bytes] = []
    n = batch.first_n
    for segment in batch.segments:
        ts, stream = timestamp(segment.ts), segment.stream.value
        for i, text in enumerate(segment.lines(), n):
            body = schemas.LogLine(schema=schema, n=i, ts=ts, stream=stream, text=text)  # type: ignore[arg-type]
            out.append(b"id: %d\nevent: line\ndata: %s\n\n" % (i, _encoder.encode(body)))
        n += segment.count
    return b"".join(out)


async def reference(
    url: str, run_id: str, start: int, base: str, status: str
) -> tuple[bytes, bytes]:
    """(raw, stream from ``start``) of an ended run, as the old code made them."""
    engine = create_engine(url)
    store = PostgresLogStore(engine)
    try:
        _, total = await store.stats(run_id)
        raw: list[bytes] = []
        first = 0
        while first < total:
            batch = await store.read_batch(run_id, first, min(1000, total - first))
            if not batch.count:
                break
            raw.append(ref_text(batch).encode())
            first = batch.end
        events: list[bytes] = []
        next_n = start
        while True:
            batch = await store.read_batch(run_id, next_n, 500)
            if batch.count:
                next_n = batch.end
                events.append(ref_line_events(batch, f"{base}/schemas/LogLine.json"))
                if batch.count == 500:
                    continue
            break
        done = schemas.LogStreamDone(
            schema=f"{base}/schemas/LogStreamDone.json", final_line=total - 1, status=status
        )
        events.append(b"event: done\ndata: %s\n\n" % _encoder.encode(done))
        return b"".join(raw), b"".join(events)
    finally:
        await engine.dispose()


# -- The synthetic log. --


def _rows(first_n: int, batch_segments: list[LogSegment]) -> LogBatch:
    return LogBatch(first_n, batch_segments)


def _seg(stream: LogStream, seconds: float, texts: list[str]) -> LogSegment:
    return LogSegment.of(stream, T0 + timedelta(seconds=seconds), texts)


def synthetic_batches() -> list[LogBatch]:
    """Batches as capture and the dispatcher append them; numbers follow on."""
    rng = random.Random(14)
    odd = [
        "\x1b[1;31mred\x1b[0m and \x1b[2K\x1b[1Gprogress 42%",
        "bad utf8 replaced: \ufffd\ufffd end",
        "",
        'quotes " and \\ backslash and \t tab',
        "controls \x01\x07\x08\x0c\x1b\x7f and DEL",
        "unicode héllo ✓ 𝄞 \u2028 \u2029 </script>",
        "   leading and trailing spaces   ",
        "\r carriage return left in",
    ]
    b64 = [b64encode(rng.randbytes(rng.randint(20, 120))).decode() for _ in range(2600)]
    long_line = b64encode(rng.randbytes(150_000)).decode()  # 200,000 characters
    batches: list[list[LogSegment]] = [
        [_seg(LogStream.STDOUT, 0, [f"dropped by the trim {i}" for i in range(40)])],
        [_seg(LogStream.STDOUT, 0.5, odd), _seg(LogStream.STDERR, 0.5, ["err 1", "err 2"])],
        [_seg(LogStream.SYSTEM, 1, ["runwarden: log truncated: older lines dropped"])],
        [_seg(LogStream.STDOUT, 1.25, ["text holding\na newline", "next"])],
        [_seg(LogStream.STDOUT, 1.5, b64[:700])],
        [_seg(LogStream.STDERR, 1.5, b64[700:1300]), _seg(LogStream.STDOUT, 2, b64[1300:1301])],
        [_seg(LogStream.STDOUT, 2.5, [long_line, long_line[:65536], "after the long line"])],
        [_seg(LogStream.STDOUT, 3, b64[1301:2600])],
        [_seg(LogStream.SYSTEM, 4, ["runwarden: killed after timeout of 1s"])],
    ]
    out: list[LogBatch] = []
    n = 0
    for segments in batches:
        batch = LogBatch(n, segments)
        out.append(batch)
        n = batch.end
    return out


LEGACY_AFTER = 3
"""A chunk in the per-line format of before the columnar one goes after this many."""


async def write_synthetic(url: str, run_id: str) -> None:
    """The synthetic log of ``run_id``: appended, a legacy chunk, then the first trimmed."""
    engine = create_engine(url)
    store = PostgresLogStore(engine)
    try:
        n = 0
        for i, batch in enumerate(synthetic_batches()):
            if i == LEGACY_AFTER:
                n = await _legacy_chunk(url, run_id, n)
            await store.append(run_id, LogBatch(n, batch.segments))
            n += batch.count
        first_chunk = synthetic_batches()[0].size
        conn = await asyncpg.connect(url)
        try:
            stored = await conn.fetchval(
                "SELECT stored_bytes FROM run_log_meta WHERE run_id = $1", run_id
            )
        finally:
            await conn.close()
        await store.trim(run_id, stored - first_chunk)  # drop_old: the first chunk goes
    finally:
        await engine.dispose()


async def _legacy_chunk(url: str, run_id: str, first: int) -> int:
    lines = [
        (0, 1_800_000_000_000_000, 0, "legacy line \x1b[32mgreen\x1b[0m"),
        (1, 1_800_000_000_000_001, 1, "legacy stderr ✓"),
        (2, 1_800_000_000_000_001, 2, "legacy system\nwith a newline"),
    ]
    body = msgspec.msgpack.encode(lines)
    size = sum(len(t.encode()) for *_, t in lines)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO run_logs (run_id, first_n, last_n, body, text_bytes)"
            " VALUES ($1, $2, $3, $4, $5)",
            run_id, first, first + 2, body, size,
        )  # fmt: skip
        await conn.execute(
            "UPDATE run_log_meta SET total_lines = $2, stored_bytes = stored_bytes + $3"
            " WHERE run_id = $1",
            run_id, first + 3, size,
        )  # fmt: skip
    finally:
        await conn.close()
    return first + 3


# -- The tests. --


@pytest.fixture(scope="module", name="daemon")
def daemon_fixture(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    with running_daemon(CONFIG, module_database_url, tmp_path_factory.mktemp("golden")) as d:
        yield d


def _base(daemon: DaemonProcess) -> str:
    return daemon.url.rstrip("/")


def _fetch(daemon: DaemonProcess, task: str, run_id: str, tail: str, **kw: object) -> bytes:
    with (
        daemon.client() as client,
        client.stream(
            "GET",
            f"/api/tasks/{task}/runs/{run_id}/log{tail}",
            **kw,  # type: ignore[arg-type]
        ) as response,
    ):
        assert response.status_code == 200
        return b"".join(response.iter_bytes())


_PORT = re.compile(rb"http://127\.0\.0\.1:\d+/")


def _digest(data: bytes) -> tuple[str, int]:
    normal = _PORT.sub(b"http://host/", data)
    return hashlib.sha256(normal).hexdigest(), len(normal)


@pytest.fixture(scope="module", name="synthetic")
def synthetic_fixture(daemon: DaemonProcess, module_database_url: str) -> str:
    with daemon.client() as client:
        run_id = trigger(client, "blank")
        assert wait_ended(client, run_id)["end_reason"] == "success"
    asyncio.run(write_synthetic(module_database_url, run_id))
    return run_id


def test_the_synthetic_log_reads_as_the_old_code_read_it(
    daemon: DaemonProcess, module_database_url: str, synthetic: str
) -> None:
    base = _base(daemon)
    raw_ref, stream_ref = asyncio.run(reference(module_database_url, synthetic, 0, base, "success"))
    raw = _fetch(daemon, "blank", synthetic, "/raw")
    stream = _fetch(daemon, "blank", synthetic, "/stream")
    assert raw == raw_ref
    assert stream == stream_ref
    assert _digest(raw) == GOLDEN_RAW
    assert _digest(stream) == GOLDEN_STREAM
    # What the log holds: the trim took the first chunk, the rest is there.
    assert raw.startswith(b"\x1b[1;31mred")
    assert b"dropped by the trim" not in raw
    assert b"legacy system\nwith a newline\n" in raw
    assert raw.endswith(b"runwarden: killed after timeout of 1s\n")


@pytest.mark.parametrize("start", [0, 7, 45, 49, 50, 1234, 2047, 2700])
def test_a_stream_from_any_line_is_the_old_one(
    daemon: DaemonProcess, module_database_url: str, synthetic: str, start: int
) -> None:
    base = _base(daemon)
    _, expected = asyncio.run(reference(module_database_url, synthetic, start, base, "success"))
    assert _fetch(daemon, "blank", synthetic, "/stream", params={"from": start}) == expected
    resumed = _fetch(
        daemon, "blank", synthetic, "/stream", headers={"Last-Event-ID": str(start - 1)}
    )
    assert resumed == expected


@pytest.mark.parametrize(("task", "status"), [("mixed", "success"), ("slow", "timeout"),
                                             ("trimmed", "success")])  # fmt: skip
def test_captured_logs_read_as_the_old_code_read_them(
    daemon: DaemonProcess, module_database_url: str, task: str, status: str
) -> None:
    with daemon.client() as client:
        run_id = trigger(client, task)
        assert wait_ended(client, run_id)["end_reason"] == status
    base = _base(daemon)
    raw_ref, stream_ref = asyncio.run(reference(module_database_url, run_id, 0, base, status))
    assert _fetch(daemon, task, run_id, "/raw") == raw_ref
    assert _fetch(daemon, task, run_id, "/stream") == stream_ref
    assert raw_ref  # every one of them wrote something
