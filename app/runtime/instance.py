"""One service instance slot's life: start an instance, record it, wait, replace it.

The :class:`ServiceSupervisor` decides which slots this node keeps; an
:class:`InstanceKeeper` keeps each of them filled: it records every lifetime of the slot's
instance as a run (``triggered_by = api``, ``replica_index`` = the slot) while its node
holds the slot, and gives the slot up after ``start_retries`` fast deaths in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.runtime.output import RunOutput
from domain import policies, services
from domain.ports import (
    Clock,
    Executor,
    LogStore,
    ProcessSpec,
    ProcessStartError,
    RunningProcess,
    RunRepository,
    SlotLedger,
    SlotState,
)
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, TriggeredBy, end_reason_for_exit
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Slot:
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


class InstanceKeeper:
    """Runs the lives of slots' instances. ``node`` names the node holding the slots;
    ``sleep`` waits between an instance's death and its replacement (tests fake it)."""

    def __init__(
        self,
        repo: RunRepository,
        logs: LogStore,
        executor: Executor,
        clock: Clock,
        ledger: SlotLedger,
        node: Callable[[], str],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = repo
        self._logs = logs
        self._executor = executor
        self._clock = clock
        self._ledger = ledger
        self._node = node
        self._sleep = sleep

    def launch(self, slot: Slot) -> None:
        """Start the slot's task: instance after instance until the slot is stopped."""
        loop = asyncio.get_running_loop()
        name = f"service {slot.service.name}[{slot.index}]"
        slot.task = loop.create_task(self._keep(slot), name=name)

    async def stop(self, slot: Slot) -> None:
        """Stop the slot's instance (its run ends ``stopped``); return once its task ended."""
        slot.stopping = True
        if slot.task is None:
            return
        if slot.waiting:
            slot.task.cancel()
        else:
            await self._terminate(slot)
        # The slot's own task records the end; wait for it (a cancelled one ends quietly).
        await asyncio.gather(slot.task, return_exceptions=True)

    async def abandon(self, slot: Slot) -> None:
        """Kill the slot's instance at once and record nothing: the slot is not ours."""
        slot.abandoned = slot.stopping = True
        process = slot.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                await process.terminate("SIGKILL", 0.0)
        if slot.task is not None:
            slot.task.cancel()
            await asyncio.gather(slot.task, return_exceptions=True)

    async def _keep(self, slot: Slot) -> None:
        """The slot's life: start an instance, wait for it, replace it, until stopped."""
        try:
            while not slot.stopping:
                try:
                    delay = await self._one_life(slot)
                except Exception:
                    # The store failed; try again later without counting it against the service.
                    log.exception("service %s[%d] failed in the daemon", *_name(slot))
                    delay = policies.restart_delay(slot.service, slot.fast_failures + 1)
                if slot.given_up and not slot.abandoned:
                    await self._give_up(slot)
                if delay is None or slot.stopping:
                    return
                slot.waiting = True
                try:
                    await self._sleep(delay)
                finally:
                    slot.waiting = False
        finally:
            slot.launched.set()

    async def _one_life(self, slot: Slot) -> float | None:
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

    async def _watch(self, slot: Slot, process: RunningProcess) -> int:
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

    def _after_death(self, slot: Slot, uptime: float, code: int) -> float | None:
        service = slot.service
        if uptime >= service.healthy_after:
            slot.fast_failures = 0
            delay = policies.restart_delay(service, 0)
        else:
            slot.fast_failures += 1
            # start_retries = 0 cannot mean "give up before the first death".
            if slot.fast_failures >= max(service.start_retries, 1):
                slot.given_up = True
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

    async def _give_up(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):  # the slot stays empty here either way
            await self._ledger.settle(
                self._node(),
                slot.service.name,
                slot.index,
                generation=slot.generation,
                state=SlotState.GIVEN_UP,
            )

    async def _record_end(self, slot: Slot, reason: EndReason, code: int) -> None:
        run = slot.run
        if run is None or slot.abandoned:
            slot.run = None
            return
        try:
            await services.end_run(self._repo, run, reason, self._clock.now(), code)
        finally:
            slot.run = None

    def _spec(self, slot: Slot, run: Run) -> ProcessSpec:
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

    async def _terminate(self, slot: Slot) -> None:
        process = slot.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                await process.terminate(slot.service.stop_signal, slot.service.graceful_stop)


def _name(slot: Slot) -> tuple[str, int]:
    return slot.service.name, slot.index


async def _quietly(step: Awaitable[None]) -> None:
    """Await a clean-up step whose failure must not hide what is being handled."""
    try:
        await step
    except Exception:
        log.exception("clean-up after a service instance failed")
