"""A minimal HTTP/1.1 keep-alive client and latency statistics.

The client is a few lines over an asyncio stream so the figures measure the server, not a
client library: one request written, one response read (``Content-Length`` or chunked).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from bench.env import TOKEN


class HttpError(Exception):
    """The server answered with an unexpected status."""


class Connection:
    """One keep-alive connection to the daemon."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request with the bench token; return ``(status, body)``."""
        assert self._reader is not None
        assert self._writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
        )
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        status_line = await self._reader.readline()
        if not status_line:
            # The server closed the idle connection (uvicorn's keep-alive timeout): reopen.
            await self.close()
            await self.open()
            assert self._reader is not None
            assert self._writer is not None
            self._writer.write(head.encode() + b"\r\n" + body)
            status_line = await self._reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = False
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                data = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return status, b"".join(parts)
        return status, await self._reader.readexactly(length or 0)

    async def get(self, path: str, expect: int = 200) -> bytes:
        """GET ``path``; raise :class:`HttpError` unless the status is ``expect``."""
        status, body = await self.request("GET", path)
        if status != expect:
            raise HttpError(f"GET {path}: {status} {body[:300]!r}")
        return body


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (``fraction`` 0.99 for p99)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(samples_ms: list[float]) -> dict[str, float]:
    """p50, p99, mean and count of millisecond samples, rounded for reading."""
    return {
        "p50_ms": round(statistics.median(samples_ms), 3),
        "p99_ms": round(percentile(samples_ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
        "n": len(samples_ms),
    }


async def timed(call: Callable[[], Awaitable[object]], count: int, warmup: int = 5) -> list[float]:
    """Milliseconds of ``count`` sequential calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples
