"""Run output as numbered lines: the pure part of log capture.

Processes write bytes; users read lines. :class:`LineAssembler` turns the chunks of one
run's streams into :class:`LogBatch` values with absolute numbers, holding at most one
partial line (bounded by ``max_line_bytes``) per stream.

Batches are columnar: a :class:`LogSegment` is the lines of one stream read at one moment,
kept as one string with the lines joined by ``\\n``. Capturing a chunk of output is then a
few C-level string operations (decode, count, replace) whatever the number of lines in it;
a Python object per line is made only when lines are read back one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def utf8_size(text: str) -> int:
    """The UTF-8 bytes of ``text``; ``isascii`` is a flag lookup, so ASCII costs nothing."""
    return len(text) if text.isascii() else len(text.encode())


def text_size(texts: str | Sequence[str]) -> int:
    """The UTF-8 bytes of the lines in ``texts`` (joined by newlines, or one per item)."""
    if isinstance(texts, str):
        return utf8_size(texts) - texts.count("\n")
    return sum(map(utf8_size, texts))


@dataclass(frozen=True, slots=True)
class LogSegment:
    """``count`` consecutive lines of one stream that share a timestamp.

    ``texts`` is either one string holding the lines joined by ``\\n`` (what capture makes:
    a line of output never holds a newline) or a tuple of one string per line (any text).
    ``size`` is the UTF-8 bytes of the lines' texts, separators not counted.
    """

    stream: LogStream
    ts: datetime
    count: int
    texts: str | tuple[str, ...]
    size: int

    @classmethod
    def of(cls, stream: LogStream, ts: datetime, texts: Sequence[str]) -> LogSegment:
        """A segment of the given line texts (joined when none holds a newline)."""
        size = sum(map(utf8_size, texts))
        joined = "\n".join(texts)
        if joined.count("\n") == len(texts) - 1:
            return cls(stream, ts, len(texts), joined, size)
        return cls(stream, ts, len(texts), tuple(texts), size)

    def lines(self) -> list[str]:
        """The texts, one string per line."""
        if isinstance(self.texts, str):
            return self.texts.split("\n")
        return list(self.texts)

    def part(self, start: int, stop: int) -> list[str]:
        """The texts of lines ``start..stop-1`` (offsets in this segment), splitting only
        as much of a joined string as needed."""
        start, stop = max(start, 0), min(stop, self.count)
        if start >= stop:
            return []
        texts = self.texts
        if not isinstance(texts, str):
            return list(texts[start:stop])
        if start == 0 and stop == self.count:
            return texts.split("\n")
        if stop <= self.count - start:
            return texts.split("\n", stop)[start:stop]
        # Nearer the end: split from the right, so the head stays one string.
        tail = texts.rsplit("\n", self.count - start)[1:]
        return tail[: stop - start]

    def sliced(self, start: int, stop: int) -> LogSegment:
        """The segment of lines ``start..stop-1`` of this one."""
        if start <= 0 and stop >= self.count:
            return self
        return LogSegment.of(self.stream, self.ts, self.part(start, stop))


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Consecutive lines numbered from ``first_n``, as segments in order."""

    first_n: int
    segments: Sequence[LogSegment] = ()

    @property
    def count(self) -> int:
        """How many lines."""
        return sum(segment.count for segment in self.segments)

    @property
    def end(self) -> int:
        """One past the number of the last line."""
        return self.first_n + self.count

    @property
    def size(self) -> int:
        """UTF-8 bytes of the lines' texts: what they weigh against a log budget."""
        return sum(segment.size for segment in self.segments)

    @classmethod
    def of(cls, lines: Sequence[LogLine]) -> LogBatch:
        """The batch of consecutive lines ``lines`` (a line per segment where needed)."""
        if not lines:
            return cls(0)
        first = lines[0].n
        if any(line.n != first + i for i, line in enumerate(lines)):
            raise ValueError("log lines of a batch must be numbered consecutively")
        segments: list[LogSegment] = []
        start = 0
        for i in range(1, len(lines) + 1):
            if i == len(lines) or (lines[i].ts, lines[i].stream) != (
                lines[start].ts,
                lines[start].stream,
            ):
                texts = [line.text for line in lines[start:i]]
                segments.append(LogSegment.of(lines[start].stream, lines[start].ts, texts))
                start = i
        return cls(first, segments)

    def lines(self) -> list[LogLine]:
        """One :class:`LogLine` per line."""
        out: list[LogLine] = []
        n = self.first_n
        for segment in self.segments:
            ts, stream = segment.ts, segment.stream
            out.extend(LogLine(n + i, ts, stream, text) for i, text in enumerate(segment.lines()))
            n += segment.count
        return out

    def text(self) -> str:
        """The lines as text, each ending in a newline (the raw download's form)."""
        parts: list[str] = []
        for segment in self.segments:
            if isinstance(segment.texts, str):
                parts.append(segment.texts)
                parts.append("\n")
            else:
                parts.extend(f"{text}\n" for text in segment.texts)
        return "".join(parts)

    def window(self, first: int, limit: int) -> LogBatch:
        """The lines numbered ``first..first+limit-1`` that this batch holds."""
        start = max(first, self.first_n)
        stop = min(first + max(limit, 0), self.end)
        if start >= stop:
            return LogBatch(start)
        segments: list[LogSegment] = []
        n = self.first_n
        for segment in self.segments:
            if n + segment.count > start and n < stop:
                segments.append(segment.sliced(start - n, stop - n))
            n += segment.count
            if n >= stop:
                break
        return LogBatch(start, segments)


def as_batch(lines: LogBatch | Sequence[LogLine]) -> LogBatch:
    """``lines`` as a batch: what a store's ``append`` takes either way."""
    return lines if isinstance(lines, LogBatch) else LogBatch.of(lines)


def _decode(data: bytes) -> str:
    # Invalid UTF-8 must not lose the line; NUL cannot be stored in PostgreSQL text.
    text = data.decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@dataclass(slots=True)
class LineAssembler:
    """Splits raw output into lines, numbering them across streams in arrival order."""

    next_n: int = 0
    max_line_bytes: int = MAX_LINE_BYTES
    _partial: dict[LogStream, bytearray] = field(default_factory=dict)

    def feed(self, stream: LogStream, data: bytes, ts: datetime) -> LogBatch:
        """Lines completed by ``data``; a trailing partial line is kept for later."""
        first = self.next_n
        buf = self._partial.get(stream)
        if buf is None:
            buf = self._partial[stream] = bytearray()
        last_nl = data.rfind(b"\n")
        if last_nl == -1:
            buf += data
            pieces = self._split_long_partial(buf)
            if not pieces:
                return LogBatch(first)
            return self._batch(first, LogSegment.of(stream, ts, pieces))
        if buf:
            complete = bytes(buf) + data[:last_nl]
            buf.clear()
        else:
            complete = data[:last_nl]
        buf += data[last_nl + 1 :]
        # One decode for the whole batch: a newline byte never sits inside a multi-byte
        # character, so splitting the text is the same as splitting the bytes.
        text = _decode(complete)
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if text.endswith("\r"):  # the last line's "\r\n" straddles the cut
                text = text[:-1]
        if self._lines_fit(complete, text):
            texts, count = text, text.count("\n") + 1
            size = utf8_size(text) - (count - 1)  # the separators are not text
        else:
            parts = text.split("\n")
            pieces = self._split_long(parts)
            texts = text if pieces is parts else "\n".join(pieces)
            count, size = len(pieces), sum(map(utf8_size, pieces))
        pieces = self._split_long_partial(buf)
        if pieces:
            texts = "\n".join([texts, *pieces])
            count, size = count + len(pieces), size + sum(map(utf8_size, pieces))
        return self._batch(first, LogSegment(stream, ts, count, texts, size))

    def _lines_fit(self, complete: bytes, text: str) -> bool:
        """True if no line of ``text`` can exceed the cap, judged from byte positions."""
        first_nl = complete.find(b"\n")
        # Every line but the first lies after the first newline (with none, -1 gives the
        # whole length).
        longest = max(first_nl, len(complete) - first_nl - 1)
        if not text.isascii():
            longest *= 3  # a replaced invalid byte becomes three bytes of U+FFFD
        return longest <= self.max_line_bytes

    def _split_long(self, texts: list[str]) -> list[str]:
        short = self.max_line_bytes // 4  # four bytes per character at most
        if max(map(len, texts)) <= short:
            return texts
        out: list[str] = []
        for piece in texts:
            if len(piece) <= short or len(piece.encode()) <= self.max_line_bytes:
                out.append(piece)
            else:
                out += self._pieces(piece.encode())
        return out

    def _split_long_partial(self, buf: bytearray) -> list[str]:
        pieces: list[str] = []
        while len(buf) >= self.max_line_bytes:
            pieces += self._pieces(bytes(buf[: self.max_line_bytes]))
            del buf[: self.max_line_bytes]
        return pieces

    def _batch(self, first: int, segment: LogSegment) -> LogBatch:
        self.next_n = first + segment.count
        return LogBatch(first, (segment,))

    def flush(self, ts: datetime) -> LogBatch:
        """The partial lines left at end of output, as final lines."""
        first = self.next_n
        segments: list[LogSegment] = []
        for stream, buf in self._partial.items():
            if buf:
                segments.append(LogSegment.of(stream, ts, self._pieces(bytes(buf))))
                buf.clear()
        self.next_n += sum(segment.count for segment in segments)
        return LogBatch(first, segments)

    def system(self, text: str, ts: datetime) -> LogBatch:
        """A line written by runwarden itself."""
        segment = LogSegment(LogStream.SYSTEM, ts, 1, (text,), utf8_size(text))
        return self._batch(self.next_n, segment)

    def _pieces(self, raw: bytes) -> list[str]:
        # A line longer than the cap is split so memory stays bounded.
        step = self.max_line_bytes
        return [_decode(raw[i : i + step]) for i in range(0, max(len(raw), 1), step)]
