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
from app.runtime.retention import retention_loop
from app.runtime.scheduler import CronScheduler
from app.runtime.supervisor import ServiceSupervisor
from domain import services
from domain.errors import NotAService, ServiceInstance, StoreUnavailable, TriggerSkipped
from domain.listing import RunPage, RunQuery
from domain.policies import Admission
from domain.ports import Clock, Executor, LogStore, RunRepository
from domain.run import Run, RunStatus
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

WAIT_POLL_INTERVAL = 0.15
"""Seconds between reads of a run that a trigger with ``wait=true`` waits on."""


@dataclass
class Daemon:
    """Owns the dispatcher and the cron loop for one configuration."""

    config: Config
    repo: RunRepository
    logs: LogStore
    executor: Executor
    clock: Clock
    database_ready: Callable[[], Awaitable[bool]]
    version: str = "0.0.0"
    on_run_end: Callable[[Run], None] | None = None
    """Told of every run end the dispatcher records (metrics); must not block."""
    started_at: datetime | None = field(default=None, init=False)
    _started_monotonic: float = field(default=0.0, init=False)
    dispatcher: Dispatcher = field(init=False)
    supervisor: ServiceSupervisor = field(init=False)
    scheduler: CronScheduler = field(init=False)
    _cron_loop: asyncio.Task[None] | None = field(default=None, init=False)
    _retention: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(
            self.repo, self.logs, self.executor, self.clock, self.tasks, on_end=self.on_run_end
        )
        self.scheduler = CronScheduler(self.repo, self.dispatcher, self.clock, self.tasks)
        self.supervisor = ServiceSupervisor(
            self.repo, self.logs, self.executor, self.clock, self.tasks
        )

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self.config.tasks

    async def start(self) -> None:
        """Settle what a previous daemon left, resume pending runs, start the loops."""
        self.started_at = self.clock.now()
        self._started_monotonic = self.clock.monotonic()
        pending = await services.reconcile_on_start(
            self.repo, self.clock, self.tasks, self.executor
        )
        for run in pending:
            self.dispatcher.submit(run)
        if pending:
            log.info("resumed %d pending runs", len(pending))
        # After the reconciliation, which ends the previous daemon's service runs.
        await self.supervisor.start()
        await self.scheduler.load_state()
        loop = asyncio.get_running_loop()
        self._cron_loop = loop.create_task(self.scheduler.run())
        self._retention = loop.create_task(retention_loop(self.repo, self.clock, self.tasks))

    async def stop(self) -> None:
        """Stop the loops, then every running process (recorded ``stopped``)."""
        for loop_task in (self._cron_loop, self._retention):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        await asyncio.gather(self.dispatcher.shutdown(), self.supervisor.stop())

    @property
    def scheduler_alive(self) -> bool:
        return self._cron_loop is not None and not self._cron_loop.done()

    @property
    def uptime(self) -> float:
        """Seconds since ``start``."""
        return max(self.clock.monotonic() - self._started_monotonic, 0.0)

    def next_run_at(self, task_name: str) -> datetime | None:
        return self.scheduler.next_run_at(task_name, self.clock.now())

    def task(self, name: str) -> TaskSpec:
        return services.find_task(self.tasks, name)

    async def trigger(
        self, task_name: str, external_execution_id: str | None = None
    ) -> tuple[Run, bool]:
        """Trigger a run under the task's overlap policy; returns it and whether it is new.

        Raises :class:`TriggerSkipped` when the policy turned it away (the skipped run is
        recorded); a repeated cloud trigger returns the existing run, not new.
        """
        task = self.task(task_name)
        admitted, created = await services.trigger_run(
            self.repo, self.clock, task, external_execution_id
        )
        if not created:
            return admitted.run, False
        if admitted.decision is Admission.SKIP:
            raise TriggerSkipped(task.name, admitted.run.id, task.on_overlap.value)
        self.dispatcher.stop_soon(list(admitted.to_stop))
        self.dispatcher.submit(admitted.run)
        return admitted.run, True

    async def stop_run(self, task_name: str, run_id: str) -> Run:
        run = await services.require_active(self.repo, run_id, task_name)
        if (task := self.tasks.get(task_name)) is not None and task.is_service:
            raise ServiceInstance(task_name, run_id)
        await self.dispatcher.stop(run)
        return await services.get_run(self.repo, run_id, task_name)

    def service(self, name: str) -> TaskSpec:
        task = self.task(name)
        if not task.is_service:
            raise NotAService(name)
        return task

    async def restart_service(self, name: str) -> int:
        """Stop and start every instance of a service; returns the instance count."""
        task = self.service(name)
        await self.supervisor.restart(name)
        return task.instances

    async def stop_service(self, name: str) -> None:
        """Stop every instance of a service; it stays stopped until restarted."""
        self.service(name)
        await self.supervisor.stop_service(name)

    async def wait_for_end(self, run: Run, seconds: float) -> Run:
        """Poll the store until ``run`` has ended or ``seconds`` passed; the run as last
        read. Polling, not the dispatcher's events: another daemon sharing the
        database may be the one running it."""
        deadline = self.clock.monotonic() + seconds
        while run.status is not RunStatus.ENDED:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(WAIT_POLL_INTERVAL, left))
            try:
                found = await self.repo.get(run.id)
            except StoreUnavailable:
                continue  # the run goes on meanwhile; answer with what is known at the end
            if found is None:
                break  # deleted meanwhile (retention, or a client)
            run = found
        return run

    async def delete_run(self, task_name: str, run_id: str) -> Run:
        """Remove an ended run and its log; 409 (``RunStillActive``) while it is active."""
        return await services.delete_run(self.repo, self.logs, run_id, task_name)

    async def summarize_runs(self) -> services.RunSummary:
        return await services.summarize_runs(self.repo)

    async def get_run(self, run_id: str, task_name: str | None = None) -> Run:
        return await services.get_run(self.repo, run_id, task_name)

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await services.list_runs(self.repo, query)
