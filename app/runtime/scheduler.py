"""The cron loop: records each due tick once and hands its run to the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

from app.runtime.dispatcher import Dispatcher
from app.runtime.resilience import durably
from domain import services
from domain.errors import StoreUnavailable
from domain.policies import Admission, select_ticks
from domain.ports import Clock, RunRepository
from domain.schedule import Schedule
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

MAX_SLEEP = 30.0
"""Wake at least this often, so a changed wall clock is noticed."""
PARALLEL_TASKS = 2048
"""Tasks whose ticks are recorded at once. The Postgres store sends concurrent admits
together (``adapters/postgres/batching.py``), so this bounds the work in flight, not the
connections used. At 256, 1,000 tasks due the same second were recorded in four waves,
each waiting for the last of its tasks (admit, then save_last_tick) before the next."""
RETRY_INTERVAL = 1.0
"""Seconds between attempts to record ticks while the database does not answer."""


class CronScheduler:
    """Fires every task that has a ``cron`` on its ticks, in the task's time zone.

    The latest tick handled per task is kept in the database, so ticks missed while the
    daemon was down (or the database was) are caught up per ``catch_up``; a task seen for
    the first time starts from now.
    """

    def __init__(
        self,
        repo: RunRepository,
        dispatcher: Dispatcher,
        clock: Clock,
        tasks: dict[str, TaskSpec],
        node: Callable[[], str | None] = lambda: None,
        on_missed: Callable[[TaskSpec, list[datetime], list[datetime]], Awaitable[None]]
        | None = None,
    ) -> None:
        self._repo = repo
        self._on_missed = on_missed
        """Told of (task, due ticks, ticks chosen to run) when ``catch_up`` dropped some."""
        self._node = node
        self._dispatcher = dispatcher
        self._clock = clock
        self._tasks = {n: t for n, t in tasks.items() if t.cron and not t.is_service}
        self._schedules = {
            n: Schedule.parse(t.cron or "", t.timezone) for n, t in self._tasks.items()
        }
        self._last_seen: dict[str, datetime] = {}
        # The first tick after each task's last_seen: computing ticks costs ~0.1 ms each
        # (croniter), which for 200 tasks due every second was half the start delay.
        self._next: dict[str, datetime] = {}
        # Per task, the walk over its ticks after `_next` (cheaper than a new croniter per
        # tick), and the first of them once looked at.
        self._ahead: dict[str, Iterator[datetime]] = {}
        self._after: dict[str, datetime] = {}
        self._failing: set[str] = set()
        self._changed = asyncio.Event()
        self.heartbeat: datetime | None = None

    def reconfigure(self, tasks: dict[str, TaskSpec]) -> list[str]:
        """Take a reloaded configuration; returns the names of tasks new to the schedule.

        New tasks start from now (a brand-new task never catches up; the caller records
        that with ``save_last_tick``), changed schedules are walked afresh from the last
        tick handled, removed tasks are forgotten.
        """
        now = self._clock.now()
        wanted = {n: t for n, t in tasks.items() if t.cron and not t.is_service}
        added = []
        for name in [n for n in self._tasks if n not in wanted]:
            self._schedules.pop(name, None)
            self._last_seen.pop(name, None)
            self._next.pop(name, None)
            self._ahead.pop(name, None)
            self._after.pop(name, None)
        for name, task in wanted.items():
            old = self._tasks.get(name)
            if old is not None and (old.cron, old.timezone) == (task.cron, task.timezone):
                continue
            self._schedules[name] = Schedule.parse(task.cron or "", task.timezone)
            self._after.pop(name, None)
            if old is None:
                added.append(name)
            self._seen(name, self._last_seen.get(name, now))
        self._tasks = wanted
        self._changed.set()  # the loop may be asleep until a tick that is gone now
        return added

    def next_run_at(self, task_name: str, after: datetime) -> datetime | None:
        schedule = self._schedules.get(task_name)
        return schedule.next_tick(after) if schedule else None

    async def load_state(self) -> None:
        """Read where each task's schedule stopped; first-seen tasks start from now."""
        now = self._clock.now()
        saved = await durably(self._repo.last_ticks, what="reading cron state")
        for name in self._tasks:
            if name in saved:
                self._seen(name, saved[name])
            else:
                self._seen(name, now)
                await durably(
                    lambda n=name: self._repo.save_last_tick(n, now),  # type: ignore[misc]
                    what=f"recording cron state of {name}",
                )

    async def run(self) -> None:
        """Catch up, then loop until cancelled."""
        if not self._last_seen:
            await self.load_state()
        while True:
            now = self._clock.now()
            self.heartbeat = now
            recorded = await self.fire_due(now)
            wait = MAX_SLEEP
            if self._next:
                wait = min(wait, (min(self._next.values()) - self._clock.now()).total_seconds())
            # While the database is away the overdue ticks stay due: do not spin on them.
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0 if recorded else RETRY_INTERVAL)):
                    await self._changed.wait()

    async def fire_due(self, now: datetime) -> bool:
        """Record and dispatch the ticks due since the last look, per ``catch_up``.

        Tasks are handled concurrently (each under its own lock in the store), so many
        tasks due the same second all start promptly. Returns False if some ticks could
        not be recorded (they stay due for the next look).
        """
        due = []
        for name, task in self._tasks.items():
            if self._next[name] > now:
                continue
            ticks = self._due_ticks(name, task, now)
            if ticks:
                chosen = select_ticks(task, ticks, now)
                due.append((task, chosen))
                if len(chosen) < len(ticks) and self._on_missed is not None:
                    await self._report_missed(task, ticks, chosen)
        if not due:
            return True
        limit = asyncio.Semaphore(PARALLEL_TASKS)

        async def one(task: TaskSpec, ticks: list[datetime]) -> bool:
            async with limit:
                return await self._fire_task(task, ticks, now)

        results = await asyncio.gather(*(one(task, ticks) for task, ticks in due))
        return all(results)

    async def _report_missed(
        self, task: TaskSpec, ticks: list[datetime], chosen: list[datetime]
    ) -> None:
        assert self._on_missed is not None
        try:
            await self._on_missed(task, ticks, chosen)
        except Exception as exc:  # a notification must never stop the schedule
            log.warning("could not record the missed ticks of %s: %s", task.name, exc)

    async def _fire_task(self, task: TaskSpec, ticks: list[datetime], now: datetime) -> bool:
        name = task.name
        try:
            for tick in ticks:
                await self._fire(task, tick)
            await self._repo.save_last_tick(name, now)
        except Exception as exc:
            # Typically the database is away: keep `since`, so these ticks are caught up
            # per `catch_up` once it answers again.
            if name not in self._failing:
                self._failing.add(name)
                log.warning(
                    "cron ticks of %s not recorded yet (%s); retrying every %gs",
                    name,
                    exc,
                    RETRY_INTERVAL,
                    exc_info=not isinstance(exc, StoreUnavailable),
                )
            return False
        if name in self._failing:
            self._failing.discard(name)
            log.info("cron ticks of %s recorded again", name)
        self._seen(name, now)
        return True

    async def _fire(self, task: TaskSpec, tick: datetime) -> None:
        admitted = await services.record_cron_tick(
            self._repo, task, tick, self._clock.now(), self._node()
        )
        if admitted is None:
            return  # already recorded, by an earlier loop or another daemon
        if admitted.decision is Admission.SKIP:
            log.info("tick %s of %s skipped: %s", tick, task.name, task.on_overlap)
            return
        self._dispatcher.stop_soon(list(admitted.to_stop))
        self._dispatcher.submit(admitted.run)

    def _due_ticks(self, name: str, task: TaskSpec, now: datetime) -> list[datetime]:
        if name not in self._after:
            self._after[name] = next(self._ahead[name])
        if self._after[name] > now:
            # The usual case: one tick due, and the one after it is the first after `now`.
            return [self._next[name]]
        # Several due: the walk could be long (a month of seconds); count back from `now`.
        return self._schedules[name].ticks_between(
            self._last_seen[name], now, task.max_catch_up_runs + 64
        )

    def _seen(self, name: str, at: datetime) -> None:
        """Ticks of ``name`` up to ``at`` are handled: move its ``_next`` past ``at``."""
        self._last_seen[name] = at
        after = self._after.pop(name, None)
        if after is not None and after > at >= self._next[name]:
            self._next[name] = after  # the walk goes on from there
            return
        self._ahead[name] = self._schedules[name].ticks_after(at)
        self._next[name] = next(self._ahead[name])
