"""The tasks table's rows: each configured task or service with its recent outcomes.

One listing call per task (its newest 20 runs, through the same use case and index as the
API's ``GET /api/tasks/{name}/runs``), run concurrently; the totals come from counters, so
this stays a few milliseconds however long the history is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.daemon import Daemon
from app.ui.cron_text import describe
from app.ui.outcomes import ATTENTION, letter, outcome
from domain.listing import ListedRun, RunQuery
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
    total: int
    strip: list[Cell]
    states: frozenset[str]

    @property
    def kind(self) -> str:
        return self.spec.kind.value


def _row(daemon: Daemon, spec: TaskSpec, recent: Sequence[ListedRun], total: int) -> TaskRow:
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
        total=total,
        strip=cells,
        states=frozenset(states),
    )


async def task_rows(
    daemon: Daemon, specs: Sequence[TaskSpec], recent: int = STRIP
) -> list[TaskRow]:
    """A row per task (in the order given) with its ``recent`` newest runs."""
    pages = await asyncio.gather(
        *(daemon.list_runs(RunQuery(task_name=spec.name, limit=recent)) for spec in specs)
    )
    return [
        _row(daemon, spec, page.runs, page.total) for spec, page in zip(specs, pages, strict=True)
    ]


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
