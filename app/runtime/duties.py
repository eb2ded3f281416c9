"""This node's share of the cluster's upkeep: heart-beating, fencing, reaping the dead,
adopting orphaned runs, honouring stop requests and stopping runs other nodes hold.

Split from :class:`app.daemon.Daemon`, which keeps the use cases the controllers call; this
module changes when the cluster's rules change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from app.runtime.dispatcher import Dispatcher
from app.runtime.membership import ClusterTiming, Membership
from app.runtime.resilience import durably
from app.runtime.supervisor import ServiceSupervisor
from domain import services
from domain.cluster import FenceAction
from domain.errors import StoreUnavailable
from domain.ports import Clock, ClusterStore, RunRepository
from domain.run import EndReason, Run, RunStatus
from domain.tasks import TaskSpec

log = logging.getLogger("app.daemon")

ADOPT_BATCH = 100
"""Pending runs held by no node that one node takes over at a time."""
RETENTION_LEASE = 900.0
"""Seconds a node keeps the retention duty between passes (every 600 s) before another
node may take it."""
STOP_WAIT_MARGIN = 5.0
"""Seconds beyond the task's ``graceful_stop`` and the lease that a stop sent to another
node waits for the end to be recorded."""
WAIT_POLL_INTERVAL = 0.15
"""Seconds between reads of a run that a caller waits on."""


async def wait_for_end(repo: RunRepository, clock: Clock, run: Run, seconds: float) -> Run:
    """Poll the store until ``run`` has ended or ``seconds`` passed; the run as last read.

    Polling, not the dispatcher's events: another daemon sharing the database may be the
    one running it.
    """
    deadline = clock.monotonic() + seconds
    while run.status is not RunStatus.ENDED:
        left = deadline - clock.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(WAIT_POLL_INTERVAL, left))
        try:
            found = await repo.get(run.id)
        except StoreUnavailable:
            continue  # the run goes on meanwhile; answer with what is known at the end
        if found is None:
            break  # deleted meanwhile (retention, or a client)
        run = found
    return run


class ClusterDuties:
    """The loops and reactions that keep this node a good member of the cluster."""

    def __init__(
        self,
        *,
        membership: Membership,
        cluster: ClusterStore,
        repo: RunRepository,
        clock: Clock,
        timing: ClusterTiming,
        tasks: Callable[[], dict[str, TaskSpec]],
    ) -> None:
        self.membership = membership
        self.cluster = cluster
        self.repo = repo
        self.clock = clock
        self.timing = timing
        self._tasks = tasks
        self.wake = asyncio.Event()
        """Set to run the duties now rather than at the next poll (slots freed, reload)."""
        # Set by attach(): the dispatcher needs stop_elsewhere at its construction.
        self.dispatcher: Dispatcher | None = None
        self.supervisor: ServiceSupervisor | None = None

    def attach(self, dispatcher: Dispatcher, supervisor: ServiceSupervisor) -> None:
        """The node's process runners, which fencing stops and adoption feeds."""
        self.dispatcher = dispatcher
        self.supervisor = supervisor

    @property
    def node_id(self) -> str:
        return self.membership.node_id

    def _runners(self) -> tuple[Dispatcher, ServiceSupervisor]:
        if self.dispatcher is None or self.supervisor is None:
            raise RuntimeError("ClusterDuties.attach() must be called before the duties run")
        return self.dispatcher, self.supervisor

    def on_control(self, payload: str) -> None:
        """A notification on the control channel: a stop request, or slots to look at."""
        try:
            body = json.loads(payload)
            op = body["op"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed control notification")
            return
        if op == "stop" and body.get("node") == self.node_id:
            self._runners()[0].stop_here(str(body.get("run")))
        elif op == "slots":
            self.wake.set()

    def on_run_change(self, payload: str) -> None:
        """A run changed somewhere in the cluster (``runwarden_runs``): when one ended, runs
        of its task waiting here for a slot that another node held try again now."""
        dispatcher = self._runners()[0]
        if not dispatcher.waiting_for_slots or '"status": "ended"' not in payload:
            return
        try:
            task_name = json.loads(payload)["task_name"]
        except (ValueError, KeyError, TypeError):
            return
        dispatcher.slot_freed(str(task_name))

    async def heartbeat_loop(self) -> None:
        """Renew this node's lease for as long as it lives; fence itself when told to."""
        while True:
            if await self.membership.renew() is FenceAction.FENCE:
                await self._fence()
            await asyncio.sleep(self.membership.next_renewal())

    async def _fence(self) -> None:
        """Declared dead (or unable to prove otherwise while others live): stop every
        process now, record nothing as the old node, rejoin with a new id."""
        old = self.node_id
        log.error(
            "node %s lost its lease (reaped, or cut off from the database while other nodes "
            "were alive): killing its processes and rejoining as a new node",
            old,
        )
        dispatcher, supervisor = self._runners()
        await asyncio.gather(dispatcher.abandon(), supervisor.abandon())
        await self.membership.join(self._tasks())
        self.wake.set()

    async def duties_loop(self) -> None:
        """Every second (or when woken): reap, adopt, honour stop requests, keep slots."""
        supervisor = self._runners()[1]
        while True:
            for duty in (self._reap, self.adopt, self._stop_requested, supervisor.sync):
                try:
                    await duty()
                except StoreUnavailable:
                    pass  # the heartbeat loop reports the outage
                except Exception:
                    log.exception("cluster duty %s failed; retrying", duty.__name__)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timing.poll):
                    await self.wake.wait()

    async def _reap(self) -> None:
        await self.membership.reap(self._tasks())

    async def adopt(self) -> None:
        """Take over pending runs of our tasks that no node holds (their node died)."""
        names = [name for name, task in self._tasks().items() if not task.is_service]
        adopted = await durably(
            lambda: self.cluster.adopt(self.node_id, names, ADOPT_BATCH),
            what="taking over pending runs",
        )
        dispatcher = self._runners()[0]
        for run in adopted:
            dispatcher.submit(run)
        if adopted:
            log.info("took over %d pending runs", len(adopted))

    async def _stop_requested(self) -> None:
        dispatcher = self._runners()[0]
        for run_id in await self.cluster.stop_requests(self.node_id):
            dispatcher.stop_here(run_id)

    async def lead_retention(self) -> bool:
        """Whether this node holds (or took) the retention duty."""
        return await self.cluster.try_lead("retention", self.node_id, RETENTION_LEASE)

    async def stop_elsewhere(self, run: Run) -> None:
        """Stop a run this node does not run: end it if still pending, else ask its owner
        and wait (bounded) until the end is recorded."""
        if run.status is RunStatus.PENDING and await services.end_run(
            self.repo, run, EndReason.STOPPED, self.clock.now()
        ):
            return
        if await self.cluster.request_stop(run.id) is None:
            return  # ended meanwhile
        task = self._tasks().get(run.task_name)
        grace = task.graceful_stop if task is not None else 0.0
        found = await self.repo.get(run.id)
        if found is not None:
            await wait_for_end(
                self.repo, self.clock, found, grace + self.timing.lease + STOP_WAIT_MARGIN
            )
