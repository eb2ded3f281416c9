"""The cron loop: records each due tick once and hands its run to the dispatcher."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from app.runtime.dispatcher import Dispatcher
from domain import services
from domain.ports import Clock, RunRepository
from domain.schedule import Schedule
from domain.tasks import CatchUp, TaskSpec

log = logging.getLogger(__name__)

MAX_SLEEP = 30.0
"""Wake at least this often, so a changed wall clock is noticed."""


class CronScheduler:
    """Fires every task that has a ``cron`` on its ticks, in the task's time zone."""

    def __init__(
        self,
        repo: RunRepository,
        dispatcher: Dispatcher,
        clock: Clock,
        tasks: dict[str, TaskSpec],
    ) -> None:
        self._repo = repo
        self._dispatcher = dispatcher
        self._clock = clock
        self._tasks = {n: t for n, t in tasks.items() if t.cron and not t.is_service}
        self._schedules = {
            n: Schedule.parse(t.cron or "", t.timezone) for n, t in self._tasks.items()
        }
        self._last_seen: dict[str, datetime] = {}
        self.heartbeat: datetime | None = None

    def next_run_at(self, task_name: str, after: datetime) -> datetime | None:
        schedule = self._schedules.get(task_name)
        return schedule.next_tick(after) if schedule else None

    async def run(self) -> None:
        """Loop until cancelled."""
        start = self._clock.now()
        for name in self._tasks:
            self._last_seen[name] = start
        while True:
            now = self._clock.now()
            self.heartbeat = now
            await self.fire_due(now)
            upcoming = [self._schedules[n].next_tick(self._last_seen[n]) for n in self._tasks]
            wait = MAX_SLEEP
            if upcoming:
                wait = min(wait, (min(upcoming) - self._clock.now()).total_seconds())
            await asyncio.sleep(max(wait, 0.0))

    async def fire_due(self, now: datetime) -> None:
        """Record and dispatch every tick due since the last look, per ``catch_up``."""
        for name, task in self._tasks.items():
            since = self._last_seen[name]
            limit = task.max_catch_up_runs if task.catch_up is CatchUp.ALL else 1
            ticks = self._schedules[name].ticks_between(since, now, limit)
            for tick in ticks:
                try:
                    run = await services.record_cron_tick(self._repo, task, tick)
                except Exception:
                    log.exception("recording tick %s of %s failed; retrying", tick, name)
                    break
                if run is not None:
                    self._dispatcher.submit(run)
                self._last_seen[name] = tick
            else:
                # Nothing failed: everything up to now has been looked at.
                self._last_seen[name] = max(since, now)
