"""The tasks table's rows: each configured task or service with its recent outcomes.

One read for every task's newest 20 runs (``Daemon.newest_runs``: an index probe per task
in one statement), so the page costs the same however long the history is. The strip is
rendered here, in one pass over prepared strings: a thousand cells through the template
engine cost more than the rest of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup

from app.daemon import Daemon
from app.ui.cron_text import describe
from app.ui.outcomes import ATTENTION, LETTERS, letter, outcome
from domain.listing import ListedRun
from domain.run import RunStatus
from domain.tasks import TaskSpec

STRIP = 20
"""Outcomes in a row's strip."""
KINDS = ("task", "service")
STATES = ("attention", "running", "scheduled", "manual")
"""The state filter: last ended run failed; a run is active; has a cron; has none."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One run in a strip."""

    run_id: str
    outcome: str
    letter: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task as the tasks table and the overview show it."""

    spec: TaskSpec
    reading: str | None
    next_run: datetime | None
    last: ListedRun | None
    last_ended: ListedRun | None
    active: int
    strip: list[Cell]
    states: frozenset[str]

    @property
    def kind(self) -> str:
        return self.spec.kind.value


def _row(daemon: Daemon, spec: TaskSpec, recent: Sequence[ListedRun]) -> TaskRow:
    last_ended = next((r for r in recent if r.status is RunStatus.ENDED), None)
    active = sum(1 for r in recent if r.status is not RunStatus.ENDED)
    states = set()
    if last_ended is not None and outcome(last_ended) in ATTENTION:
        states.add("attention")
    if active:
        states.add("running")
    if spec.cron:
        states.add("scheduled")
    elif not spec.is_service:
        states.add("manual")
    cells = [Cell(r.id, outcome(r), letter(outcome(r)), r.created_at) for r in reversed(recent)]
    return TaskRow(
        spec=spec,
        reading=describe(spec.cron),
        next_run=daemon.next_run_at(spec.name) if spec.cron else None,
        last=recent[0] if recent else None,
        last_ended=last_ended,
        active=active,
        strip=cells,
        states=frozenset(states),
    )


async def task_rows(
    daemon: Daemon, specs: Sequence[TaskSpec], recent: int = STRIP
) -> list[TaskRow]:
    """A row per task (in the order given) with its ``recent`` newest runs."""
    newest = await daemon.newest_runs([spec.name for spec in specs], recent)
    return [_row(daemon, spec, newest.get(spec.name, [])) for spec in specs]


def _stamp(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-12-07 01:26:59 CET``, as strftime would say it, in a fraction of its time
    (a page formats a thousand of these)."""
    local = moment.astimezone(zone)
    return f"{local.isoformat(' ', 'seconds')[:19]} {local.tzname()}"


# Outcome names and letters are our own constants, and a stamp is digits and a zone
# abbreviation: nothing in a cell needs escaping.
_CELL = {
    name: (f'<span class="cell o-{name}" title="{name.replace("_", " ")} · ', f'">{mark}</span>')
    for name, mark in LETTERS.items()
}


def strip_html(cells: Sequence[Cell], zone: ZoneInfo) -> Markup:
    """The strip of outcomes, oldest first: an image whose label counts the outcomes for
    screen readers; a letter per cell, its outcome and time on hover. Not links: 20 tab
    stops a row would bury the actions (the task page links every run)."""
    counts: dict[str, int] = {}
    parts = []
    for cell in cells:
        counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
        opening, closing = _CELL.get(cell.outcome) or _CELL["pending"]
        parts.append(opening + _stamp(cell.created_at, zone) + closing)
    said = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
    newest = cells[-1].outcome.replace("_", " ") if cells else "none"
    label = f"Last {len(cells)} outcomes, oldest first: {said}; newest {newest}"
    return Markup('<span class="strip" role="img" aria-label="{}">').format(label) + Markup(
        "".join(parts) + "</span>"
    )


def select(rows: Sequence[TaskRow], q: str, kind: str, state: str) -> list[TaskRow]:
    """The rows whose name contains ``q`` (any case), of ``kind`` and in ``state`` (blank:
    any)."""
    needle = q.lower()
    return [
        row
        for row in rows
        if (not needle or needle in row.spec.name.lower())
        and (not kind or row.kind == kind)
        and (not state or state in row.states)
    ]
