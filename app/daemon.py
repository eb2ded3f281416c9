"""The running daemon as the controllers see it: the use cases wired to live parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from app.config import Config, ConfigError, load_config
from app.runtime.dispatcher import Dispatcher
from app.runtime.duties import ClusterDuties, wait_for_end
from app.runtime.membership import ClusterTiming, Membership
from app.runtime.notifier import NotificationRelay
from app.runtime.resilience import durably
from app.runtime.retention import retention_loop
from app.runtime.scheduler import CronScheduler
from app.runtime.supervisor import ServiceSupervisor
from domain import services
from domain.cluster import NodeStatus
from domain.errors import NotAService, ServiceInstance, TriggerSkipped
from domain.listing import ListedRun, RunPage, RunQuery
from domain.policies import Admission
from domain.ports import (
    ChannelSender,
    Clock,
    ClusterStore,
    Executor,
    LogStore,
    NotificationOutbox,
    RunRepository,
    SlotLedger,
)
from domain.run import EndReason, Run
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed, by task or service name."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    config_hash: str


@dataclass
class Daemon:
    """Owns this node's dispatcher, supervisor, cron loop and cluster duties."""

    config: Config
    repo: RunRepository
    logs: LogStore
    executor: Executor
    clock: Clock
    database_ready: Callable[[], Awaitable[bool]]
    cluster: ClusterStore
    slots: SlotLedger
    timing: ClusterTiming = field(default_factory=ClusterTiming)
    version: str = "0.0.0"
    on_run_end: Callable[[Run], None] | None = None
    """Told of every run end the dispatcher records (metrics); must not block."""
    outbox: NotificationOutbox | None = None
    sender: ChannelSender | None = None
    base_url: str = "http://127.0.0.1:9477"
    """This daemon's own URL: links to runs in notifications, unless ``[notify] base_url``."""
    on_notification: Callable[[str, str], None] | None = None
    """Told of every try of a notification this node made: (channel, outcome)."""
    relay: NotificationRelay | None = field(default=None, init=False)
    started_at: datetime | None = field(default=None, init=False)
    _started_monotonic: float = field(default=0.0, init=False)
    membership: Membership = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    supervisor: ServiceSupervisor = field(init=False)
    scheduler: CronScheduler = field(init=False)
    _cron_loop: asyncio.Task[None] | None = field(default=None, init=False)
    _loops: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _heartbeats: asyncio.Task[None] | None = field(default=None, init=False)
    duties: ClusterDuties = field(init=False)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self.membership = Membership(
            self.cluster,
            self.clock,
            self.timing,
            self.executor,
            version=self.version,
            config_hash=self.config.config_hash,
        )
        self.duties = ClusterDuties(
            membership=self.membership,
            cluster=self.cluster,
            repo=self.repo,
            clock=self.clock,
            timing=self.timing,
            tasks=lambda: self.tasks,
        )
        self.dispatcher = Dispatcher(
            self.repo,
            self.logs,
            self.executor,
            self.clock,
            self.tasks,
            on_end=self.on_run_end,
            node=self._node,
            stop_elsewhere=self.duties.stop_elsewhere,
        )
        if self.outbox is not None and self.sender is not None:
            self.relay = NotificationRelay(
                self.outbox,
                self.sender,
                self.logs,
                self.clock,
                self.config.notify,
                self.tasks,
                node=self._node,
                base_url=self.base_url,
                on_outcome=self.on_notification,
            )
        self.scheduler = CronScheduler(
            self.repo,
            self.dispatcher,
            self.clock,
            self.tasks,
            node=self._node,
            on_missed=self.relay.missed if self.relay is not None else None,
        )
        self.supervisor = ServiceSupervisor(
            self.repo,
            self.logs,
            self.executor,
            self.clock,
            self.tasks,
            self.slots,
            node=self._node,
            live_nodes=lambda: self.membership.live_nodes,
        )
        self.duties.attach(self.dispatcher, self.supervisor)

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self.config.tasks

    @property
    def node_id(self) -> str:
        """This node's id in the cluster (a new one after it rejoined)."""
        return self.membership.node_id

    def _node(self) -> str:
        return self.membership.node_id

    async def start(self) -> None:
        """Join the cluster (settling dead daemons), take pending runs and service slots,
        start the loops."""
        self.started_at = self.clock.now()
        self._started_monotonic = self.clock.monotonic()
        await self.membership.join(self.tasks)
        loop = asyncio.get_running_loop()
        # Heart-beating from the moment the node exists: a slow start must not look dead.
        self._heartbeats = loop.create_task(self.duties.heartbeat_loop())
        await self.duties.adopt()
        await self.supervisor.start()
        await self.scheduler.load_state()
        if self.relay is not None:
            await self.relay.start()
        self._cron_loop = loop.create_task(self.scheduler.run())
        self._loops = [
            self._cron_loop,
            loop.create_task(self.duties.duties_loop()),
            loop.create_task(
                retention_loop(
                    self.repo, self.clock, lambda: self.tasks, may_run=self.duties.lead_retention
                )
            ),
        ]

    async def stop(self) -> None:
        """Stop the loops, then every running process (recorded ``stopped``), then leave
        the cluster so the others take over its pending runs and slots at once."""
        for loop_task in self._loops:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        if self.relay is not None:
            await self.relay.stop()
        # Still heart-beating meanwhile: a slow graceful stop must not look like a death.
        await asyncio.gather(self.dispatcher.shutdown(), self.supervisor.stop())
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
        await self.membership.leave()

    def on_control(self, payload: str) -> None:
        """A notification on the control channel (see :class:`ClusterDuties`)."""
        self.duties.on_control(payload)

    def on_run_change(self, payload: str) -> None:
        """A run changed somewhere in the cluster (see :class:`ClusterDuties`)."""
        self.duties.on_run_change(payload)

    async def reload_file(self) -> Reloaded:
        """Re-read the config file this daemon was started with and apply it.

        Raises :class:`ConfigError` listing every problem when the file is not valid; then
        nothing changes.
        """
        try:
            config = await asyncio.to_thread(load_config, self.config.path)
        except ConfigError as error:
            log.error("config not reloaded, the file has problems:\n%s", error)
            raise
        return await self.reload(config)

    async def reload(self, config: Config) -> Reloaded:
        """Apply a re-read configuration on this node, without stopping anything that runs.

        New tasks start scheduling; removed tasks get no new runs (their queued runs end
        ``skipped``, running ones finish, their history stays); changed tasks use the new
        definition from their next run; services scale to their ``instances`` and restart
        one instance at a time where their process changed.
        """
        async with self._reloading:
            old = self.config.tasks
            report = Reloaded(
                added=sorted(set(config.tasks) - set(old)),
                removed=sorted(set(old) - set(config.tasks)),
                changed=sorted(n for n in config.tasks if n in old and config.tasks[n] != old[n]),
                config_hash=config.config_hash,
            )
            self.config = config
            self.membership.config_hash = config.config_hash
            now = self.clock.now()
            for run in self.dispatcher.reconfigure(config.tasks):
                await durably(
                    lambda run=run: services.end_run(self.repo, run, EndReason.SKIPPED, now),  # type: ignore[misc]
                    what=f"ending queued run {run.id} of a removed task",
                )
            for name in self.scheduler.reconfigure(config.tasks):
                await durably(
                    lambda name=name: self.repo.save_last_tick(name, now),  # type: ignore[misc]
                    what=f"recording cron state of {name}",
                )
            await self.supervisor.reconfigure(config.tasks)
            if self.relay is not None:
                await self.relay.reconfigure(config.notify, config.tasks, self.base_url)
            self.duties.wake.set()
        log.info(
            "config reloaded (hash %s): added %s, removed %s, changed %s",
            report.config_hash,
            report.added or "none",
            report.removed or "none",
            report.changed or "none",
        )
        return report

    async def nodes(self) -> Sequence[NodeStatus]:
        """Every node of the cluster, judged alive on the database's clock."""
        return await self.cluster.nodes(self.timing.lease)

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
            self.repo, self.clock, task, external_execution_id, node_id=self.node_id
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
        read."""
        return await wait_for_end(self.repo, self.clock, run, seconds)

    async def delete_run(self, task_name: str, run_id: str) -> Run:
        """Remove an ended run and its log; 409 (``RunStillActive``) while it is active."""
        return await services.delete_run(self.repo, self.logs, run_id, task_name)

    async def summarize_runs(self) -> services.RunSummary:
        return await services.summarize_runs(self.repo)

    async def notifications_of(self, run_id: str) -> int:
        """How many notification deliveries the run caused."""
        return await self.outbox.count_for_run(run_id) if self.outbox is not None else 0

    async def get_run(self, run_id: str, task_name: str | None = None) -> Run:
        return await services.get_run(self.repo, run_id, task_name)

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await services.list_runs(self.repo, query)

    async def newest_runs(
        self, task_names: Sequence[str], limit: int, ended_only: bool = False
    ) -> dict[str, Sequence[ListedRun]]:
        """Each task's newest runs in one read (the dashboard's strips and attention)."""
        return await services.newest_runs(self.repo, task_names, limit, ended_only)
