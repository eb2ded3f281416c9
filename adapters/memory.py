"""In-memory fakes of the storage ports and the clock, for unit tests.

They keep the same contracts as the Postgres adapters (the contract suite in
``tests/contract`` runs against both), including cron-tick uniqueness and
compare-and-set, so a test that passes on a fake means the same on the real store.
"""

from __future__ import annotations

import bisect
import builtins
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from domain.listing import RunPage, RunQuery, apply_query
from domain.logs import LogLine
from domain.ports import Clock, LogStore, RunRepository
from domain.run import Run, RunStatus, TriggeredBy


def _is_first_cron_attempt(run: Run) -> bool:
    return run.triggered_by is TriggeredBy.CRON and run.retry_attempt == 0


class InMemoryRunRepository(RunRepository):
    """Runs in a dict. Not thread-safe; safe across awaits (no method awaits midway)."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    async def add(self, run: Run) -> None:
        """Insert a new run; a duplicate id or external execution id raises ValueError."""
        if run.id in self.runs:
            raise ValueError(f"run {run.id} already exists")
        if run.external_execution_id is not None and any(
            r.external_execution_id == run.external_execution_id for r in self.runs.values()
        ):
            raise ValueError(f"external execution {run.external_execution_id} already recorded")
        self.runs[run.id] = run

    async def add_cron_run(self, run: Run) -> bool:
        """Insert a cron run unless its tick is already recorded; say whether it was."""
        if _is_first_cron_attempt(run) and any(
            _is_first_cron_attempt(r)
            and r.task_name == run.task_name
            and r.created_at == run.created_at
            for r in self.runs.values()
        ):
            return False
        await self.add(run)
        return True

    async def replace(self, new: Run, expected: RunStatus) -> bool:
        """Store ``new`` if the stored run still has status ``expected``."""
        current = self.runs.get(new.id)
        if current is None or current.status is not expected:
            return False
        self.runs[new.id] = new
        return True

    async def get(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        return self.runs.get(run_id)

    async def list(self, query: RunQuery) -> RunPage:
        """Filter, order and window with the reference implementation."""
        return apply_query(list(self.runs.values()), query)

    async def active(self, task_name: str | None = None) -> builtins.list[Run]:
        """Pending and running runs, oldest first."""
        found = [
            r
            for r in self.runs.values()
            if r.is_active and (task_name is None or r.task_name == task_name)
        ]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def delete(self, run_id: str) -> bool:
        """Remove an ended run; say whether one was removed."""
        run = self.runs.get(run_id)
        if run is None or run.is_active:
            return False
        del self.runs[run_id]
        return True


class InMemoryLogStore(LogStore):
    """Log lines in per-run lists, ordered by ``n``."""

    def __init__(self) -> None:
        self.lines: dict[str, list[LogLine]] = {}

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> None:
        """Store lines that continue the run's log."""
        if lines:
            self.lines.setdefault(run_id, []).extend(lines)

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]:
        """Up to ``limit`` lines with ``n >= first``, in order."""
        stored = self.lines.get(run_id, [])
        if limit <= 0:
            return []
        start = bisect.bisect_left(stored, first, key=lambda line: line.n)
        return stored[start : start + limit]

    async def stats(self, run_id: str) -> tuple[int, int]:
        """(first available n, one past the last n); (0, 0) when none."""
        stored = self.lines.get(run_id)
        if not stored:
            return (0, 0)
        return (stored[0].n, stored[-1].n + 1)

    async def delete(self, run_id: str) -> None:
        """Remove every line of the run."""
        self.lines.pop(run_id, None)


class FakeClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._monotonic = 0.0

    def now(self) -> datetime:
        """The fake current instant, in UTC."""
        return self._now.astimezone(UTC)

    def monotonic(self) -> float:
        """Seconds advanced since creation."""
        return self._monotonic

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (wall clock only: monotonic time does not go back)."""
        if when.tzinfo is None:
            raise ValueError("FakeClock needs timezone-aware datetimes")
        self._now = when

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("a clock cannot be advanced backwards")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
