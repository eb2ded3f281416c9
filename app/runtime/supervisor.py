"""Keeps every service's instances alive: which slots this node keeps, and commands.

Each ``[services.NAME]`` has ``instances`` slots; ``app/runtime/instance.py`` keeps one
slot filled (one run per lifetime of its instance, replaced after ``restart_delay``, left
empty after ``start_retries`` fast deaths in a row so a broken service cannot spin).

In a cluster the slots are shared: each is held by one node (``SlotLedger``), so a service
runs exactly ``instances`` processes however many nodes run it. A node starts instances
only in the slots it holds; the others' slots are not its business until they are freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from app.runtime.instance import InstanceKeeper, Sleep, Slot
from domain.cluster import slots_to_claim
from domain.errors import TaskNotFound
from domain.ports import (
    Clock,
    Executor,
    LogStore,
    RunRepository,
    SlotLedger,
    SlotRecord,
    SlotState,
)
from domain.run import Run
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

CLAIM_PATIENCE = 3.0
"""Seconds a free slot waits for a node under its fair share before any node takes it."""
COMMAND_POLL = 0.1
"""Seconds between checks that every holder carried out a stop or restart."""


class ServiceSupervisor:
    """Runs the instances of the services among ``services`` whose slots this node holds.

    Slots live in the ``SlotLedger`` every node shares: ``sync`` claims free slots (up to
    a fair share of the live nodes, more when nobody else takes them), starts an instance
    in each slot it holds, and carries out the stop and restart commands given to a
    service from any node. ``node`` names this node (it changes when the node rejoins);
    ``live_nodes`` counts the live nodes. ``sleep`` waits between an instance's death and
    its replacement; tests inject a fake.
    """

    def __init__(
        self,
        repo: RunRepository,
        logs: LogStore,
        executor: Executor,
        clock: Clock,
        services: dict[str, TaskSpec],
        ledger: SlotLedger,
        node: Callable[[], str],
        live_nodes: Callable[[], int] = lambda: 1,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = repo
        self._logs = logs
        self._executor = executor
        self._clock = clock
        self._services = {name: spec for name, spec in services.items() if spec.is_service}
        self._ledger = ledger
        self._node = node
        self._live_nodes = live_nodes
        self._keeper = InstanceKeeper(repo, logs, executor, clock, ledger, node, sleep)
        self._held: dict[tuple[str, int], Slot] = {}
        self._sync_lock = asyncio.Lock()
        self._commands: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        """Create the slots, claim this node's share, start their instances; return once
        each has started or failed to."""
        await self._ledger.sync({name: spec.instances for name, spec in self._services.items()})
        await self.sync()
        await asyncio.gather(*(slot.launched.wait() for slot in list(self._held.values())))

    async def stop(self) -> None:
        """Stop every instance this node runs (``stop_signal``, SIGKILL after
        ``graceful_stop``). Their runs are recorded ``stopped``; when this returns no slot
        task is left. The slots stay held until the node leaves."""
        self._closing = True
        await asyncio.gather(*list(self._commands), return_exceptions=True)
        slots = list(self._held.values())
        await asyncio.gather(*(self._keeper.stop(s) for s in slots), return_exceptions=True)
        self._held.clear()

    async def abandon(self) -> None:
        """This node was reaped: kill every instance at once and record nothing. The
        slots belong to the cluster again; a later ``sync`` claims afresh."""
        slots = list(self._held.values())
        self._held.clear()
        await asyncio.gather(*(self._keeper.abandon(s) for s in slots), return_exceptions=True)

    async def reconfigure(self, services: dict[str, TaskSpec]) -> None:
        """Take a reloaded configuration (on this node).

        A removed service, and slots beyond a lowered ``instances``, have their instances
        stopped and their slots let go; a raised ``instances`` adds slots that ``sync``
        fills. A service whose process changed (``run``, ``env``, ``working_dir``,
        ``shell``) restarts its instances here one at a time, each waiting for the one
        before to have started; other changes apply from each instance's next life.
        """
        old = self._services
        new = {name: spec for name, spec in services.items() if spec.is_service}
        async with self._sync_lock:
            self._services = new
            me = self._node()
            for key, slot in sorted(self._held.items()):
                spec = new.get(key[0])
                if spec is None or key[1] >= spec.instances:
                    del self._held[key]
                    await self._keeper.stop(slot)
                    await self._ledger.settle(me, *key, generation=slot.generation, release=True)
                else:
                    slot.service = spec
            counts = {name: spec.instances for name, spec in new.items()}
            await self._ledger.sync({**dict.fromkeys(old, 0), **counts})
            for name, spec in new.items():
                if name in old and _process_of(old[name]) != _process_of(spec):
                    await self._roll(name)
        await self.sync()

    async def _roll(self, name: str) -> None:
        """Restart this node's instances of ``name`` one at a time."""
        for key in sorted(k for k in self._held if k[0] == name):
            slot = self._held[key]
            await self._keeper.stop(slot)
            fresh = Slot(slot.service, slot.index, generation=slot.generation)
            self._held[key] = fresh
            self._start(fresh)
            await fresh.launched.wait()

    async def restart(self, name: str, wait: float = 30.0) -> None:
        """Stop all instances of ``name``, on every node, and start them again with fresh
        failure counts. Returns once every slot's holder has done so (at most ``wait``
        seconds). Raises :class:`TaskNotFound` if no service has that name."""
        await self._command(name, stop=False, wait=wait)

    async def stop_service(self, name: str, wait: float = 30.0) -> None:
        """Stop all instances of ``name`` on every node; they stay stopped until
        ``restart(name)``."""
        await self._command(name, stop=True, wait=wait)

    def instances(self, name: str) -> list[Run]:
        """The active runs of ``name``'s instances on this node, by ``replica_index``."""
        self._require(name)
        slots = sorted(
            (s for (svc, _), s in self._held.items() if svc == name), key=lambda s: s.index
        )
        return [slot.run for slot in slots if slot.run is not None]

    def given_up(self, name: str) -> list[int]:
        """Replica indexes of ``name`` held here and left empty after ``start_retries``
        fast failures."""
        self._require(name)
        return sorted(s.index for (svc, _), s in self._held.items() if svc == name and s.given_up)

    async def sync(self) -> None:
        """Bring this node's instances in line with the ledger (see the class doc)."""
        async with self._sync_lock:
            if self._closing or not self._services:
                return
            me = self._node()
            rows = await self._ledger.slots(self._services)
            mine = {(r.service, r.index): r for r in rows if r.node_id == me}
            for key in [k for k in self._held if k not in mine]:
                # Reaped meanwhile (we were presumed dead): a survivor owns it now.
                log.warning("service %s[%d]: slot taken over by another node", *key)
                self._spawn(self._keeper.abandon(self._held.pop(key)))
            for key, row in mine.items():
                slot = self._held.get(key)
                if slot is None:
                    await self._take(row)
                elif row.generation > slot.generation:
                    slot.generation = row.generation
                    self._spawn(self._carry_out(slot, row))
            await self._claim(rows, me)

    async def _claim(self, rows: Sequence[SlotRecord], me: str) -> None:
        for name, spec in self._services.items():
            own = [r for r in rows if r.service == name]
            free = [r for r in own if r.node_id is None and r.state is SlotState.WANTED]
            count = slots_to_claim(
                instances=spec.instances,
                live_nodes=self._live_nodes(),
                owned=sum(1 for r in own if r.node_id == me),
                free=len(free),
                free_for=max((r.free_for for r in free), default=0.0),
                patience=CLAIM_PATIENCE,
            )
            for row in await self._ledger.claim(me, name, count):
                await self._take(row)

    async def _take(self, row: SlotRecord) -> None:
        """Start keeping a slot this node holds."""
        slot = Slot(self._services[row.service], row.index, generation=row.generation)
        self._held[(row.service, row.index)] = slot
        if row.state is SlotState.GIVEN_UP:
            slot.given_up = True
            slot.launched.set()
        elif row.state is SlotState.STOPPED:
            self._held.pop((row.service, row.index))
            await self._ledger.settle(
                self._node(), row.service, row.index, generation=row.generation, release=True
            )
        else:
            self._start(slot)

    async def _carry_out(self, slot: Slot, row: SlotRecord) -> None:
        """Apply a stop or restart command to a slot this node runs."""
        key = (row.service, row.index)
        await self._keeper.stop(slot)
        me = self._node()
        if row.state is SlotState.STOPPED or self._closing:
            if self._held.get(key) is slot:
                del self._held[key]
            await self._ledger.settle(me, *key, generation=row.generation, release=True)
            return
        fresh = Slot(slot.service, slot.index, generation=row.generation)
        self._held[key] = fresh
        self._start(fresh)
        await fresh.launched.wait()
        await self._ledger.settle(me, *key, generation=row.generation)

    async def _command(self, name: str, *, stop: bool, wait: float) -> None:
        self._require(name)
        generation = await self._ledger.command(name, stop=stop)
        await self.sync()
        deadline = self._clock.monotonic() + wait
        while not await self._ledger.settled(name, generation):
            if self._clock.monotonic() >= deadline:
                log.warning("service %s: not every node confirmed the command yet", name)
                return
            await asyncio.sleep(COMMAND_POLL)
        # Slots that were free were claimed afresh (by this node too): wait for ours.
        mine = [s.launched.wait() for (svc, _), s in self._held.items() if svc == name]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - self._clock.monotonic(), 0.1)):
                await asyncio.gather(*mine)

    def _start(self, slot: Slot) -> None:
        if self._closing:
            slot.launched.set()
        else:
            self._keeper.launch(slot)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    def _require(self, name: str) -> TaskSpec:
        try:
            return self._services[name]
        except KeyError:
            raise TaskNotFound(name) from None


def _process_of(spec: TaskSpec) -> tuple[object, ...]:
    """What a running instance was started with: a change means restarting it."""
    return (spec.run, tuple(sorted(spec.env.items())), spec.working_dir, spec.shell)
