"""In-memory fakes of the storage ports and the clock, for unit tests.

They keep the same contracts as the Postgres adapters (the contract suite in
``tests/contract`` runs against both), including cron-tick uniqueness, compare-and-set and
admission under the overlap policy, so a test that passes on a fake means the same on the
real store. No method awaits midway, so each is atomic within one event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain import policies
from domain.listing import ListedRun, RunPage, RunQuery, StatusFilter, apply_query
from domain.logs import LogBatch, LogLine, LogSegment, as_batch
from domain.policies import Admission, TaskLoad
from domain.ports import (
    Admitted,
    Clock,
    Executor,
    LogStore,
    OutputSink,
    ProcessSpec,
    ProcessStartError,
    RunCount,
    RunningProcess,
    RunRepository,
)
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec


def _is_first_cron_attempt(run: Run) -> bool:
    return run.triggered_by is TriggeredBy.CRON and run.retry_attempt == 0


def _creation_order(run: Run) -> tuple[datetime, str]:
    return (run.created_at, run.id)


@dataclass
class _Log:
    """One run's stored batches, oldest first, and its counters."""

    chunks: list[LogBatch] = field(default_factory=list)
    first_available: int = 0
    total_lines: int = 0
    stored_bytes: int = 0


class InMemoryLogStore(LogStore):
    """Log lines in per-run lists of the batches they came in, ordered by ``n``."""

    def __init__(self) -> None:
        self.logs: dict[str, _Log] = {}

    async def append(self, run_id: str, lines: LogBatch | Sequence[LogLine]) -> None:
        """Store lines that continue the run's log."""
        batch = as_batch(lines)
        if not batch.count:
            return
        log = self.logs.get(run_id)
        if log is None:
            log = self.logs[run_id] = _Log(first_available=batch.first_n)
        log.chunks.append(batch)
        log.total_lines = max(log.total_lines, batch.end)
        log.stored_bytes += batch.size

    async def read_batch(
        self, run_id: str, first: int, limit: int, max_bytes: int | None = None
    ) -> LogBatch:
        """Up to ``limit`` lines with ``n >= first``, in order (fewer past ``max_bytes``)."""
        log = self.logs.get(run_id)
        first = max(first, 0 if log is None else log.first_available)
        if log is None or limit <= 0:
            return LogBatch(first)
        start = bisect.bisect_right(log.chunks, first, key=lambda chunk: chunk.first_n) - 1
        segments: list[LogSegment] = []
        read = 0
        for chunk in log.chunks[max(start, 0) :]:
            if chunk.first_n >= first + limit:
                break
            if max_bytes is not None and segments and read >= max_bytes:
                break
            read += chunk.size
            segments.extend(chunk.window(first, limit).segments)
        return LogBatch(first, segments)

    async def stats(self, run_id: str) -> tuple[int, int]:
        """(first available n, one past the last n); (0, 0) when none."""
        log = self.logs.get(run_id)
        return (0, 0) if log is None else (log.first_available, log.total_lines)

    async def trim(self, run_id: str, max_bytes: int) -> None:
        """Drop the oldest batches until at most ``max_bytes`` of text remain."""
        log = self.logs.get(run_id)
        if log is None:
            return
        while log.chunks and log.stored_bytes > max(max_bytes, 0):
            log.stored_bytes -= log.chunks.pop(0).size
        log.first_available = log.chunks[0].first_n if log.chunks else log.total_lines
        if not log.chunks:
            log.stored_bytes = 0

    async def delete(self, run_id: str) -> None:
        """Remove every line of the run."""
        self.logs.pop(run_id, None)


class InMemoryRunRepository(RunRepository):
    """Runs in a dict. Not thread-safe; safe across awaits (no method awaits midway).

    Given ``logs``, deleting or pruning a run removes its log too, as Postgres cascades.
    """

    def __init__(self, logs: InMemoryLogStore | None = None) -> None:
        self.runs: dict[str, Run] = {}
        self.ticks: dict[str, datetime] = {}
        self._logs = logs
        self.node_up: Callable[[str], bool] = lambda _node: True
        """Whether a node may take slots (an ``InMemoryCluster`` sets it)."""
        self.on_end: Callable[[Run], None] = lambda _run: None
        """Told of every run stored as ended, as it is stored (an ``InMemoryOutbox``
        sets it: the outbox is written with the end, as Postgres' trigger does)."""

    def _check_new(self, run: Run) -> None:
        if run.id in self.runs:
            raise ValueError(f"run {run.id} conflicts with a stored run: same id")
        if run.external_execution_id is not None and any(
            r.external_execution_id == run.external_execution_id for r in self.runs.values()
        ):
            raise ValueError(f"run {run.id} conflicts with a stored run: same external id")
        if self._stored_tick(run) is not None:
            raise ValueError(f"run {run.id} conflicts with a stored run: same cron tick")

    def _stored_tick(self, run: Run) -> Run | None:
        if not _is_first_cron_attempt(run):
            return None
        return next(
            (
                r
                for r in self.runs.values()
                if _is_first_cron_attempt(r)
                and r.task_name == run.task_name
                and r.created_at == run.created_at
            ),
            None,
        )

    def _load(self, task_name: str) -> TaskLoad:
        mine = [r.status for r in self.runs.values() if r.task_name == task_name]
        return TaskLoad(
            running=mine.count(RunStatus.RUNNING), pending=mine.count(RunStatus.PENDING)
        )

    def _forget(self, run_id: str) -> None:
        del self.runs[run_id]
        if self._logs is not None:
            self._logs.logs.pop(run_id, None)

    async def add(self, run: Run) -> None:
        """Insert a new run; a duplicate id, external execution id or cron tick raises
        ValueError."""
        self._check_new(run)
        self.runs[run.id] = run

    async def add_cron_run(self, run: Run) -> bool:
        """Insert a cron run unless its tick is already recorded; say whether it was."""
        if self._stored_tick(run) is not None:
            return False
        await self.add(run)
        return True

    async def replace(self, new: Run, expected: RunStatus, follow_up: Run | None = None) -> bool:
        """Store ``new`` if the stored run still has status ``expected``; then ``follow_up``.

        A ``follow_up`` that conflicts with a stored run raises ValueError and stores nothing.
        """
        current = self.runs.get(new.id)
        if current is None or current.status is not expected:
            return False
        if expected is RunStatus.RUNNING and current.node_id != new.node_id:
            return False  # fenced: only the node running it records its end
        if follow_up is not None:
            self._check_new(follow_up)
        self.runs[new.id] = new
        if new.status is RunStatus.ENDED:
            self.on_end(new)
        if follow_up is not None:
            self.runs[follow_up.id] = follow_up
        return True

    async def admit(self, run: Run, task: TaskSpec, start_at: datetime | None = None) -> Admitted:
        """Record a trigger under ``task``'s overlap policy.

        A repeat of a stored cloud execution returns that run (ACCEPT), a repeat of a stored
        cron tick returns that run (SKIP); neither inserts anything. With ``start_at`` an
        accepted run is stored running if a slot is free and nothing is queued.
        """
        if run.task_name != task.name:
            raise ValueError(f"run {run.id} is of task {run.task_name!r}, not {task.name!r}")
        if run.external_execution_id is not None:
            for stored in self.runs.values():
                if stored.external_execution_id == run.external_execution_id:
                    return Admitted(stored, Admission.ACCEPT)
        tick = self._stored_tick(run)
        if tick is not None:
            return Admitted(tick, Admission.SKIP)
        self._check_new(run)
        load = self._load(task.name)
        decision = policies.admit(task, load)
        to_stop: Sequence[Run] = ()
        if decision is Admission.TERMINATE:
            running = [
                r
                for r in self.runs.values()
                if r.task_name == task.name and r.status is RunStatus.RUNNING
            ]
            to_stop = tuple(policies.runs_to_terminate(task, running, load.pending))
        stored = run.ended(EndReason.SKIPPED, run.created_at) if decision is Admission.SKIP else run
        if (
            start_at is not None
            and decision is Admission.ACCEPT
            and load.pending == 0
            and load.running < task.max_concurrent
            and (run.node_id is None or self.node_up(run.node_id))
        ):
            stored = run.started(start_at)
        self.runs[run.id] = stored
        if stored.status is RunStatus.ENDED:
            self.on_end(stored)
        return Admitted(stored, decision, to_stop)

    async def claim(self, run: Run, at: datetime, max_concurrent: int) -> Run | None:
        """Move the pending run to running at ``at`` if a slot is free; None otherwise."""
        stored = self.runs.get(run.id)
        if stored is None or stored.status is not RunStatus.PENDING:
            return None
        if self._load(stored.task_name).running >= max_concurrent:
            return None
        if run.node_id is not None and not self.node_up(run.node_id):
            return None
        started = dataclasses.replace(stored.started(at), node_id=run.node_id)
        self.runs[run.id] = started
        return started

    async def prune(
        self, task_name: str, keep_runs: int | None, ended_before: datetime | None, batch: int
    ) -> int:
        """Delete up to ``batch`` ended runs (and their logs) that retention lets go."""
        ended = sorted(
            (r for r in self.runs.values() if r.task_name == task_name and not r.is_active),
            key=_creation_order,
            reverse=True,
        )
        kept = len(ended) if keep_runs is None else max(keep_runs, 0)
        doomed = [
            r
            for i, r in enumerate(ended)
            if i >= kept
            or (ended_before is not None and r.end_at is not None and r.end_at < ended_before)
        ]
        # Oldest first, as Postgres does when it deletes by count.
        for run in doomed[::-1][: max(batch, 0)]:
            self._forget(run.id)
        return min(len(doomed), max(batch, 0))

    async def last_ticks(self) -> dict[str, datetime]:
        """The latest cron tick handled, per task."""
        return dict(self.ticks)

    async def save_last_tick(self, task_name: str, tick: datetime) -> None:
        """Remember ``tick`` as handled, unless a later one already is."""
        known = self.ticks.get(task_name)
        self.ticks[task_name] = tick if known is None else max(known, tick)

    async def get(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        return self.runs.get(run_id)

    async def active(self, task_name: str | None = None) -> builtins.list[Run]:
        """Pending and running runs, oldest first."""
        found = [
            r
            for r in self.runs.values()
            if r.is_active and (task_name is None or r.task_name == task_name)
        ]
        return sorted(found, key=_creation_order)

    async def delete(self, run_id: str) -> bool:
        """Remove an ended run (and its log, given the store); say whether one was removed."""
        run = self.runs.get(run_id)
        if run is None or run.is_active:
            return False
        self._forget(run_id)
        return True

    async def counts(self) -> builtins.list[RunCount]:
        """Stored runs per (task, status, end reason), counted here and now."""
        tally = Counter((r.task_name, r.status, r.end_reason) for r in self.runs.values())
        return [RunCount(task, status, reason, n) for (task, status, reason), n in tally.items()]

    async def last_ended(self, reasons: Collection[EndReason]) -> Run | None:
        """The ended run with one of ``reasons`` that ended last (ties: greatest id)."""
        ended = [r for r in self.runs.values() if r.end_reason in reasons and r.end_at is not None]
        return max(ended, key=lambda r: (r.end_at, r.id), default=None)

    async def newest(
        self, task_names: Sequence[str], limit: int, ended_only: bool = False
    ) -> dict[str, Sequence[ListedRun]]:
        """Each task's newest runs, through the reference listing."""
        ended = StatusFilter(phases=frozenset({RunStatus.ENDED})) if ended_only else None
        everything = builtins.list(self.runs.values())
        return {
            name: apply_query(everything, RunQuery(task_name=name, status=ended, limit=limit)).runs
            for name in task_names
        }

    async def list(self, query: RunQuery) -> RunPage:
        """Filter, order and window with the reference implementation."""
        return apply_query(list(self.runs.values()), query)


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


class InMemoryProcess(RunningProcess):
    """A process that exits when the test says so (``finish``) or when terminated (-1)."""

    def __init__(self, pid: int, spec: ProcessSpec, sink: OutputSink) -> None:
        self._pid = pid
        self.spec = spec
        self.sink = sink
        self.exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.signals: list[str] = []

    @property
    def pid(self) -> int:
        return self._pid

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def terminate(self, stop_signal: str, grace: float) -> None:
        self.signals.append(stop_signal)
        if not self.exit.done():
            self.exit.set_result(-1)

    def finish(self, code: int) -> None:
        """Exit with ``code``."""
        self.exit.set_result(code)


class InMemoryExecutor(Executor):
    """Starts :class:`InMemoryProcess` es and remembers them, for tests of the runtime.

    ``refuse`` makes ``start`` fail with that message; ``exit_at_once`` makes every new
    process exit with that code as soon as it starts; ``reaped`` lists the run ids that
    ``reap_orphans`` was asked about.
    """

    def __init__(self) -> None:
        self.started: list[InMemoryProcess] = []
        self.refuse: str | None = None
        self.exit_at_once: int | None = None
        self.reaped: list[str] = []

    async def start(self, spec: ProcessSpec, sink: OutputSink) -> RunningProcess:
        if self.refuse:
            raise ProcessStartError(self.refuse)
        process = InMemoryProcess(1000 + len(self.started), spec, sink)
        if self.exit_at_once is not None:
            process.finish(self.exit_at_once)
        self.started.append(process)
        return process

    async def reap_orphans(self, run_ids: Collection[str], node_ids: Collection[str]) -> int:
        self.reaped.extend(run_ids)
        return 0
