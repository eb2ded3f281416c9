"""Run output as numbered lines: the pure part of log capture.

Processes write bytes; users read lines. :class:`LineAssembler` turns the chunks of one
run's streams into :class:`LogLine` values with absolute numbers, holding at most one
partial line (bounded by ``max_line_bytes``) per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

MAX_LINE_BYTES = 64 * 1024
"""A longer line is split; the pieces are stored as consecutive lines."""


class LogStream(StrEnum):
    """Where a line came from."""

    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"
    """Written by runwarden itself: start failures, truncation notices, kills."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a run's log. ``n`` counts from 0 over all streams of the run."""

    n: int
    ts: datetime
    stream: LogStream
    text: str


def _decode(data: bytes) -> str:
    # Invalid UTF-8 must not lose the line; NUL cannot be stored in PostgreSQL text.
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


@dataclass(slots=True)
class LineAssembler:
    """Splits raw output into lines, numbering them across streams in arrival order."""

    next_n: int = 0
    max_line_bytes: int = MAX_LINE_BYTES
    _partial: dict[LogStream, bytearray] = field(default_factory=dict)

    def feed(self, stream: LogStream, data: bytes, ts: datetime) -> list[LogLine]:
        """Lines completed by ``data``; a trailing partial line is kept for later."""
        buf = self._partial.setdefault(stream, bytearray())
        buf += data
        lines: list[LogLine] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl == -1:
                break
            self._emit(lines, stream, bytes(buf[start:nl]).removesuffix(b"\r"), ts)
            start = nl + 1
        del buf[:start]
        while len(buf) >= self.max_line_bytes:
            self._emit(lines, stream, bytes(buf[: self.max_line_bytes]), ts)
            del buf[: self.max_line_bytes]
        return lines

    def flush(self, ts: datetime) -> list[LogLine]:
        """The partial lines left at end of output, as final lines."""
        lines: list[LogLine] = []
        for stream, buf in self._partial.items():
            if buf:
                self._emit(lines, stream, bytes(buf), ts)
                buf.clear()
        return lines

    def system(self, text: str, ts: datetime) -> LogLine:
        """A line written by runwarden itself."""
        line = LogLine(self.next_n, ts, LogStream.SYSTEM, text)
        self.next_n += 1
        return line

    def _emit(self, out: list[LogLine], stream: LogStream, raw: bytes, ts: datetime) -> None:
        # A line longer than the cap is split so memory stays bounded.
        for i in range(0, max(len(raw), 1), self.max_line_bytes):
            out.append(LogLine(self.next_n, ts, stream, _decode(raw[i : i + self.max_line_bytes])))
            self.next_n += 1
