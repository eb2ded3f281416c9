"""The lines of one run numbered but not yet stored: the queue between capture and store.

Lines wait in the columnar segments the assembler made (one string per chunk read), so
queueing, batching and shedding them costs a step per segment, not per line. Numbers are
positions: the first pending line is ``first``, the next ones follow densely.

The first ``protected`` segments were handed to the store in one batch and may be stored
already (a write can fail after its commit), so they are never dropped or renumbered.
"""

from __future__ import annotations

from domain.logs import LogBatch, LogSegment, utf8_size

LINE_OVERHEAD = 64
"""What a line weighs beyond its text: its object once a reader splits the batch. Batch
sizes count it, so a stored batch of empty lines still holds a bounded number of lines."""


def weight(segment: LogSegment) -> int:
    """What ``segment`` counts for against batch sizes and the hold bound."""
    return segment.size + LINE_OVERHEAD * segment.count


class PendingLines:
    """Segments of consecutive lines waiting to be stored, oldest first."""

    def __init__(self) -> None:
        self.segments: list[LogSegment] = []
        self.first = 0
        self.lines = 0
        self.text = 0
        self.protected = 0
        self.protected_weight = 0

    def __bool__(self) -> bool:
        return bool(self.segments)

    @property
    def weight(self) -> int:
        """The weight of everything pending."""
        return self.text + LINE_OVERHEAD * self.lines

    @property
    def unsent_weight(self) -> int:
        """The weight of what was not handed to the store yet."""
        return self.weight - self.protected_weight

    def add(self, batch: LogBatch) -> None:
        """Queue ``batch``, which continues the pending lines."""
        if not batch.segments:
            return
        if not self.segments:
            self.first = batch.first_n
        self.segments.extend(batch.segments)
        self.lines += batch.count
        self.text += batch.size

    def next_batch(self, flush_bytes: int) -> LogBatch:
        """The oldest lines, about ``flush_bytes`` of weight (everything up to twice that),
        now protected."""
        if self.weight <= 2 * flush_bytes:
            end = len(self.segments)
        else:
            end = total = 0
            while end < len(self.segments) and total < flush_bytes:
                segment = self.segments[end]
                if total + weight(segment) > 2 * flush_bytes and segment.count > 1:
                    segment = self._cut(end, flush_bytes - total, flush_bytes)
                total += weight(segment)
                end += 1
        batch = LogBatch(self.first, self.segments[:end])
        self.protected = end
        self.protected_weight = batch.size + LINE_OVERHEAD * batch.count
        return batch

    def _cut(self, index: int, room: int, flush_bytes: int) -> LogSegment:
        """Split segment ``index`` into pieces: the first weighing about ``room``, the
        others about ``flush_bytes``, each at least one line. Returns the first.

        All at once, so a big segment under a small budget is split once, not per batch.
        """
        segment = self.segments[index]
        pieces: list[LogSegment] = []
        texts = segment.lines()
        start, total = 0, 0
        for i, text in enumerate(texts):
            total += utf8_size(text) + LINE_OVERHEAD
            if total >= room or i == len(texts) - 1:
                pieces.append(LogSegment.of(segment.stream, segment.ts, texts[start : i + 1]))
                start, total, room = i + 1, 0, flush_bytes
        self.segments[index : index + 1] = pieces
        return pieces[0]

    def stored_below(self, total: int) -> int:
        """How many protected segments hold only lines numbered below ``total``."""
        known, end = 0, self.first
        while known < self.protected and end + self.segments[known].count <= total:
            end += self.segments[known].count
            known += 1
        return known

    def stored(self, count: int) -> int:
        """The first ``count`` segments are stored: drop them, unprotect the rest; returns
        their text bytes."""
        done = self.segments[:count]
        del self.segments[:count]
        lines = sum(segment.count for segment in done)
        text = sum(segment.size for segment in done)
        self.first += lines
        self.lines -= lines
        self.text -= text
        self.protected = self.protected_weight = 0
        return text

    def shed(self, target: int) -> int:
        """Drop the oldest unprotected segments until the weight is at most ``target``;
        how many lines went. The lines after them take their numbers."""
        start = end = self.protected
        excess = self.weight - target
        lost = freed = 0
        while end < len(self.segments) and excess > 0:
            segment = self.segments[end]
            freed += segment.size
            lost += segment.count
            excess -= weight(segment)
            end += 1
        del self.segments[start:end]
        self.lines -= lost
        self.text -= freed
        return lost

    def clear(self) -> int:
        """Drop everything; how many lines went."""
        lines = self.lines
        self.segments.clear()
        self.first += lines
        self.lines = self.text = 0
        self.protected = self.protected_weight = 0
        return lines
