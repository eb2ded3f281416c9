"""The run page's log viewer: which lines a page shows, read from the store by number.

A page shows at most :data:`PAGE_LINES` lines: the last ones, or those just before a line
number (``?before=N``, "load earlier"). It asks the store for the run's line count first
(one row of its metadata) and then reads only that window, so a 200 MB log opens as fast
as a small one: nothing else of the log is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from app.ui.ansi import ansi_to_html
from domain.ports import LogStore

PAGE_LINES = 500
"""Lines a page (or a "load earlier" fragment) shows."""
MAX_LINES_IN_PAGE = 5000
"""Lines ui.js keeps in the page while following; older ones are dropped from the top."""


@dataclass(frozen=True, slots=True)
class ShownLine:
    """One line as the template shows it: its number, stream, time and escaped HTML."""

    n: int
    stream: str
    ts: datetime
    html: Markup


def lines_html(lines: list[ShownLine]) -> Markup:
    """The lines as the viewer's markup (what ui.js builds for live lines).

    Built here rather than in a template loop: five times faster for a page of 500, and
    every value in it is a number, a known stream name or already escaped HTML.
    """
    return Markup(
        "".join(
            f'<div class="ll ll-{line.stream}" data-n="{line.n}"><span class="ln" '
            f'aria-hidden="true">{line.n + 1}</span><span class="lt">{line.html}</span></div>\n'
            for line in lines
        )
    )


@dataclass(frozen=True, slots=True)
class LogView:
    """The window of a run's log a page shows."""

    lines: list[ShownLine]
    first: int
    """Number of the first line shown (= ``end`` when none is)."""
    end: int
    """One past the last line shown: where live following resumes."""
    first_available: int
    """Lines before this were dropped (``log_on_full = "drop_old"``)."""
    total: int
    """Lines ever written (the next line's number)."""

    @property
    def html(self) -> Markup:
        """The lines' markup."""
        return lines_html(self.lines)

    @property
    def earlier(self) -> int:
        """How many stored lines come before this window."""
        return max(self.first - self.first_available, 0)

    @property
    def later(self) -> int:
        """How many lines come after this window (a page of history, not the tail)."""
        return max(self.total - self.end, 0)

    @property
    def at_tail(self) -> bool:
        """The window ends at the last line written: live lines continue it."""
        return self.end >= self.total


async def read_view(
    logs: LogStore, run_id: str, before: int | None = None, limit: int = PAGE_LINES
) -> LogView:
    """Up to ``limit`` lines ending just before ``before`` (default: the end of the log)."""
    first_available, total = await logs.stats(run_id)
    end = total if before is None else min(max(before, 0), total)
    first = max(end - limit, first_available, 0)
    if first >= end:
        return LogView([], end, end, first_available, total)
    batch = await logs.read_batch(run_id, first, end - first)
    lines: list[ShownLine] = []
    n = batch.first_n
    for segment in batch.segments:
        stream = segment.stream.value
        for text in segment.lines():
            if n >= end:
                break
            lines.append(ShownLine(n, stream, segment.ts, ansi_to_html(text)))
            n += 1
    shown_first = lines[0].n if lines else end
    return LogView(lines, shown_first, max(n, shown_first), first_available, max(total, n))
