"""The running daemon as the controllers see it: the use cases wired to live parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.config import Config
from app.runtime.dispatcher import Dispatcher
from app.runtime.scheduler import CronScheduler
from domain import services
from domain.listing import RunPage, RunQuery
from domain.ports import Clock, Executor, LogStore, RunRepository
from domain.run import Run
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Daemon:
    """Owns the dispatcher and the cron loop for one configuration."""

    config: Config
    repo: RunRepository
    logs: LogStore
    executor: Executor
    clock: Clock
    database_ready: Callable[[], Awaitable[bool]]
    dispatcher: Dispatcher = field(init=False)
    scheduler: CronScheduler = field(init=False)
    _cron_loop: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(self.repo, self.logs, self.executor, self.clock, self.tasks)
        self.scheduler = CronScheduler(self.repo, self.dispatcher, self.clock, self.tasks)

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self.config.tasks

    async def start(self) -> None:
        """Settle what a previous daemon left, resume pending runs, start the cron loop."""
        pending = await services.reconcile_on_start(self.repo, self.clock, self.tasks.keys())
        for run in pending:
            self.dispatcher.submit(run)
        if pending:
            log.info("resumed %d pending runs", len(pending))
        self._cron_loop = asyncio.get_running_loop().create_task(self.scheduler.run())

    async def stop(self) -> None:
        """Stop the cron loop, then every running process (recorded ``stopped``)."""
        if self._cron_loop is not None:
            self._cron_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cron_loop
        await self.dispatcher.shutdown()

    @property
    def scheduler_alive(self) -> bool:
        return self._cron_loop is not None and not self._cron_loop.done()

    def next_run_at(self, task_name: str) -> datetime | None:
        return self.scheduler.next_run_at(task_name, self.clock.now())

    def task(self, name: str) -> TaskSpec:
        return services.find_task(self.tasks, name)

    async def trigger(self, task_name: str) -> Run:
        run = await services.trigger_run(self.repo, self.clock, self.task(task_name))
        self.dispatcher.submit(run)
        return run

    async def stop_run(self, task_name: str, run_id: str) -> Run:
        run = await services.require_active(self.repo, run_id, task_name)
        await self.dispatcher.stop(run)
        return await services.get_run(self.repo, run_id, task_name)

    async def get_run(self, run_id: str, task_name: str | None = None) -> Run:
        return await services.get_run(self.repo, run_id, task_name)

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await services.list_runs(self.repo, query)
