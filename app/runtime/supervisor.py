"""Keeps every service's instances alive: one run per lifetime of one instance.

Each ``[services.NAME]`` has ``instances`` slots; each slot is one asyncio task that starts a
process, records it as a run (``triggered_by = api``, ``replica_index`` = the slot), waits for
it, records its end and starts the next one after ``restart_delay``. A slot whose instance
dies ``start_retries`` times in a row before staying up ``healthy_after`` seconds is left
empty until the service is restarted, so a broken service cannot spin.

In a cluster the slots are shared: each is held by one node (``SlotLedger``), so a service
runs exactly ``instances`` processes however many nodes run it. A node starts instances
only in the slots it holds; the others' slots are not its business until they are freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.runtime.output import RunOutput
from domain import policies, services
from domain.cluster import slots_to_claim
from domain.errors import TaskNotFound
from domain.ports import (
    Clock,
    Executor,
    LogStore,
    ProcessSpec,
    ProcessStartError,
    RunningProcess,
    RunRepository,
    SlotLedger,
    SlotRecord,
    SlotState,
)
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, TriggeredBy, end_reason_for_exit
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

CLAIM_PATIENCE = 3.0
"""Seconds a free slot waits for a node under its fair share before any node takes it."""
COMMAND_POLL = 0.1
"""Seconds between checks that every holder carried out a stop or restart."""


@dataclass(slots=True)
class _Slot:
    """One instance slot of a service this node holds, and the task that keeps it filled."""

    service: TaskSpec
    index: int
    generation: int = 0
    """The last stop/restart command of the service this slot has taken in."""
    run: Run | None = None
    """The slot's active run as last recorded; None between lifetimes."""
    process: RunningProcess | None = None
    stopping: bool = False
    """We are stopping this slot: its run ends ``stopped`` and it is not refilled."""
    abandoned: bool = False
    """The slot is no longer ours (this node was reaped): kill, record nothing."""
    waiting: bool = False
    """The task is only sleeping before a restart, so cancelling it is harmless."""
    given_up: bool = False
    fast_failures: int = 0
    launched: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first instance has started (or failed to): ``restart`` waits for it."""
    task: asyncio.Task[None] | None = None


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
        self._sleep = sleep
        self._held: dict[tuple[str, int], _Slot] = {}
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
        await asyncio.gather(*(self._stop_slot(s) for s in slots), return_exceptions=True)
        self._held.clear()

    async def abandon(self) -> None:
        """This node was reaped: kill every instance at once and record nothing. The
        slots belong to the cluster again; a later ``sync`` claims afresh."""
        slots = list(self._held.values())
        self._held.clear()
        await asyncio.gather(*(self._abandon(s) for s in slots), return_exceptions=True)

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
                    await self._stop_slot(slot)
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
            await self._stop_slot(slot)
            fresh = _Slot(slot.service, slot.index, generation=slot.generation)
            self._held[key] = fresh
            self._launch(fresh)
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
                self._spawn(self._abandon(self._held.pop(key)))
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
        slot = _Slot(self._services[row.service], row.index, generation=row.generation)
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
            self._launch(slot)

    async def _carry_out(self, slot: _Slot, row: SlotRecord) -> None:
        """Apply a stop or restart command to a slot this node runs."""
        key = (row.service, row.index)
        await self._stop_slot(slot)
        me = self._node()
        if row.state is SlotState.STOPPED or self._closing:
            if self._held.get(key) is slot:
                del self._held[key]
            await self._ledger.settle(me, *key, generation=row.generation, release=True)
            return
        fresh = _Slot(slot.service, slot.index, generation=row.generation)
        self._held[key] = fresh
        self._launch(fresh)
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    def _require(self, name: str) -> TaskSpec:
        try:
            return self._services[name]
        except KeyError:
            raise TaskNotFound(name) from None

    def _launch(self, slot: _Slot) -> None:
        if self._closing:
            slot.launched.set()
            return
        loop = asyncio.get_running_loop()
        name = f"service {slot.service.name}[{slot.index}]"
        slot.task = loop.create_task(self._keep(slot), name=name)

    async def _stop_slot(self, slot: _Slot) -> None:
        slot.stopping = True
        if slot.task is None:
            return
        if slot.waiting:
            slot.task.cancel()
        else:
            await self._terminate(slot)
        # The slot's own task records the end; wait for it (a cancelled one ends quietly).
        await asyncio.gather(slot.task, return_exceptions=True)

    async def _abandon(self, slot: _Slot) -> None:
        slot.abandoned = slot.stopping = True
        process = slot.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                await process.terminate("SIGKILL", 0.0)
        if slot.task is not None:
            slot.task.cancel()
            await asyncio.gather(slot.task, return_exceptions=True)

    async def _keep(self, slot: _Slot) -> None:
        """The slot's life: start an instance, wait for it, replace it, until stopped."""
        try:
            while not slot.stopping:
                try:
                    delay = await self._one_life(slot)
                except Exception:
                    # The store failed; try again later without counting it against the service.
                    log.exception("service %s[%d] failed in the daemon", *_name(slot))
                    delay = policies.restart_delay(slot.service, slot.fast_failures + 1)
                if delay is None or slot.stopping:
                    return
                slot.waiting = True
                try:
                    await self._sleep(delay)
                finally:
                    slot.waiting = False
        finally:
            slot.launched.set()

    async def _one_life(self, slot: _Slot) -> float | None:
        """Run one instance to its end; the delay before the next one, or None for none."""
        service = slot.service
        now = self._clock.now()
        run = Run(
            id=services.new_run_id(now),
            task_name=service.name,
            created_at=now,
            triggered_by=TriggeredBy.API,
            replica_index=slot.index,
            node_id=self._node(),
        )
        if not await self._ledger.record_instance(run):
            # The slot is no longer ours (or the service was stopped): leave it.
            slot.stopping = True
            return None
        slot.run = run
        if slot.stopping:
            await self._record_end(slot, EndReason.STOPPED, EXIT_NOT_EXECUTED)
            return None
        output = RunOutput(run.id, self._logs, self._clock)
        try:
            slot.process = await self._executor.start(self._spec(slot, run), output)
        except ProcessStartError as exc:
            await output.system(f"runwarden: {exc}")
            await output.close()
            await self._record_end(slot, EndReason.FAILED, EXIT_NOT_EXECUTED)
            slot.launched.set()
            return self._after_death(slot, uptime=0.0, code=EXIT_NOT_EXECUTED)
        began = self._clock.monotonic()
        output.open()
        try:
            code = await self._watch(slot, slot.process)
        except BaseException as exc:
            # Cancelled, or the store failed: the process must not outlive its slot.
            await self._terminate(slot)
            await _quietly(output.close())
            cancelled = isinstance(exc, asyncio.CancelledError)
            reason = EndReason.STOPPED if cancelled else EndReason.FAILED
            await _quietly(self._record_end(slot, reason, EXIT_NOT_EXECUTED))
            slot.process = None
            raise
        slot.process = None
        uptime = self._clock.monotonic() - began
        await _quietly(output.close())
        stopped = slot.stopping
        reason = end_reason_for_exit(code, service.exit_codes, stopped=stopped)
        await self._record_end(slot, reason, code)
        return None if stopped else self._after_death(slot, uptime, code)

    async def _watch(self, slot: _Slot, process: RunningProcess) -> int:
        run = slot.run
        assert run is not None
        started = await services.start_run(self._repo, run, self._clock.now(), process.pid)
        if started is not None:
            slot.run = started
        slot.launched.set()
        if started is None or slot.stopping:
            # Stopped while it was being spawned (or its run was ended by someone else).
            slot.stopping = True
            await self._terminate(slot)
        try:
            return await process.wait()
        except Exception:
            # Its output could not be stored; the process has exited all the same.
            log.exception("storing output of service %s[%d] failed", *_name(slot))
            return EXIT_NOT_EXECUTED

    def _after_death(self, slot: _Slot, uptime: float, code: int) -> float | None:
        service = slot.service
        if uptime >= service.healthy_after:
            slot.fast_failures = 0
            delay = policies.restart_delay(service, 0)
        else:
            slot.fast_failures += 1
            # start_retries = 0 cannot mean "give up before the first death".
            if slot.fast_failures >= max(service.start_retries, 1):
                slot.given_up = True
                self._spawn(self._give_up(slot))
                log.warning(
                    "service %s[%d] died %d times in a row within %gs (last exit %d); "
                    "its slot stays empty until the service is restarted",
                    *_name(slot),
                    slot.fast_failures,
                    service.healthy_after,
                    code,
                )
                return None
            delay = policies.restart_delay(service, slot.fast_failures)
        log.info("service %s[%d] exited %d; replacing it in %gs", *_name(slot), code, delay)
        return delay

    async def _give_up(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):  # the slot stays empty here either way
            await self._ledger.settle(
                self._node(),
                slot.service.name,
                slot.index,
                generation=slot.generation,
                state=SlotState.GIVEN_UP,
            )

    async def _record_end(self, slot: _Slot, reason: EndReason, code: int) -> None:
        run = slot.run
        if run is None or slot.abandoned:
            slot.run = None
            return
        try:
            await services.end_run(self._repo, run, reason, self._clock.now(), code)
        finally:
            slot.run = None

    def _spec(self, slot: _Slot, run: Run) -> ProcessSpec:
        service = slot.service
        env = {
            **service.env,
            "RUNWARDEN_RUN_ID": run.id,
            "RUNWARDEN_TASK": service.name,
            "RUNWARDEN_REPLICA": str(slot.index),
            "RUNWARDEN_NODE_ID": run.node_id or "",
        }
        return ProcessSpec(
            command=service.run, shell=service.shell, env=env, working_dir=service.working_dir
        )

    async def _terminate(self, slot: _Slot) -> None:
        process = slot.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                await process.terminate(slot.service.stop_signal, slot.service.graceful_stop)


def _process_of(spec: TaskSpec) -> tuple[object, ...]:
    """What a running instance was started with: a change means restarting it."""
    return (spec.run, tuple(sorted(spec.env.items())), spec.working_dir, spec.shell)


def _name(slot: _Slot) -> tuple[str, int]:
    return slot.service.name, slot.index


async def _quietly(step: Awaitable[None]) -> None:
    """Await a clean-up step whose failure must not hide what is being handled."""
    try:
        await step
    except Exception:
        log.exception("clean-up after a service instance failed")
