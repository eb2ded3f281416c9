"""Geometry of the task page's duration chart: one bar per run, oldest on the left.

Pure: the template draws what :func:`duration_bars` measures. Each bar keeps its run's id
(the bar links to the run), its outcome (a class for the colour, a letter under the bar,
a hatch for the bad ones, so colour is never the only cue) and a text alternative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.ui.outcomes import BAD, letter, outcome

WIDTH = 600
"""The SVG's viewBox width; it scales to the page."""
HEIGHT = 120
"""Height of the bars' area; the letters go in a row below it."""
LETTER_ROW = 14
GAP = 2
MIN_BAR = 2
"""A run that took no time still shows a sliver, so every run has something to click."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One run's bar in viewBox units."""

    run_id: str
    outcome: str
    letter: str
    bad: bool
    seconds: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Chart:
    """Bars plus what the axis says."""

    bars: list[Bar]
    longest: float
    width: int = WIDTH
    height: int = HEIGHT
    letter_row: int = LETTER_ROW


def seconds_of(run: object, now: datetime) -> float:
    """How long a run took (ended) or has taken so far (running); 0 before it started."""
    start: datetime | None = getattr(run, "start_at", None)
    if start is None:
        return 0.0
    end: datetime = getattr(run, "end_at", None) or now
    return max((end - start).total_seconds(), 0.0)


def duration_bars(runs: Sequence[object], now: datetime, slots: int = 50) -> Chart:
    """Bars for ``runs`` given newest first (as the listing returns them).

    The chart always has room for ``slots`` bars so bar widths do not jump as runs come;
    heights scale to the longest run shown.
    """
    chosen = list(runs[:slots])[::-1]
    durations = [seconds_of(run, now) for run in chosen]
    longest = max(durations, default=0.0)
    step = WIDTH / max(slots, 1)
    bar_width = max(step - GAP, 1.0)
    bars = []
    for index, (run, seconds) in enumerate(zip(chosen, durations, strict=True)):
        height = MIN_BAR if longest <= 0 else max(HEIGHT * seconds / longest, MIN_BAR)
        name = outcome(run)
        bars.append(
            Bar(
                run_id=str(getattr(run, "id", "")),
                outcome=name,
                letter=letter(name),
                bad=name in BAD,
                seconds=seconds,
                x=round(index * step + GAP / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(bar_width, 2),
                height=round(height, 2),
            )
        )
    return Chart(bars=bars, longest=longest)
