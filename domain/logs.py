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
        last_nl = data.rfind(b"\n")
        if last_nl == -1:
            buf += data
            return self._split_long_partial(stream, buf, ts)
        if buf:
            complete = bytes(buf) + data[:last_nl]
            buf.clear()
        else:
            complete = data[:last_nl]
        buf += data[last_nl + 1 :]
        # One decode for the whole batch: a newline byte never sits inside a multi-byte
        # character, so splitting the text is the same as splitting the bytes.
        text = _decode(complete)
        lines: list[LogLine] = []
        n = self.next_n
        short = self.max_line_bytes // 4  # four bytes per character at most
        for piece in text.split("\n"):
            if piece.endswith("\r"):
                piece = piece[:-1]
            if len(piece) <= short or len(piece.encode()) <= self.max_line_bytes:
                lines.append(LogLine(n, ts, stream, piece))
                n += 1
            else:
                self.next_n = n
                self._emit(lines, stream, piece.encode(), ts)
                n = self.next_n
        self.next_n = n
        lines += self._split_long_partial(stream, buf, ts)
        return lines

    def _split_long_partial(self, stream: LogStream, buf: bytearray, ts: datetime) -> list[LogLine]:
        lines: list[LogLine] = []
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
