"""Keeps every service's instances alive: one run per lifetime of one instance.

Each ``[services.NAME]`` has ``instances`` slots; each slot is one asyncio task that starts a
process, records it as a run (``triggered_by = api``, ``replica_index`` = the slot), waits for
it, records its end and starts the next one after ``restart_delay``. A slot whose instance
dies ``start_retries`` times in a row before staying up ``healthy_after`` seconds is left
empty until the service is restarted, so a broken service cannot spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.runtime.output import RunOutput
from domain import policies, services
from domain.errors import TaskNotFound
from domain.ports import (
    Clock,
    Executor,
    LogStore,
    ProcessSpec,
    ProcessStartError,
    RunningProcess,
    RunRepository,
)
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, TriggeredBy, end_reason_for_exit
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Slot:
    """One instance slot of a service and the task that keeps it filled."""

    service: TaskSpec
    index: int
    run: Run | None = None
    """The slot's active run as last recorded; None between lifetimes."""
    process: RunningProcess | None = None
    stopping: bool = False
    """We are stopping this slot: its run ends ``stopped`` and it is not refilled."""
    waiting: bool = False
    """The task is only sleeping before a restart, so cancelling it is harmless."""
    given_up: bool = False
    fast_failures: int = 0
    launched: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first instance has started (or failed to): ``restart`` waits for it."""
    task: asyncio.Task[None] | None = None


class ServiceSupervisor:
    """Runs the services among ``services`` (tasks in that dict are ignored).

    ``sleep`` waits between an instance's death and its replacement; tests inject a fake.
    """

    def __init__(
        self,
        repo: RunRepository,
        logs: LogStore,
        executor: Executor,
        clock: Clock,
        services: dict[str, TaskSpec],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = repo
        self._logs = logs
        self._executor = executor
        self._clock = clock
        self._services = {name: spec for name, spec in services.items() if spec.is_service}
        self._sleep = sleep
        self._slots: dict[str, list[_Slot]] = {name: [] for name in self._services}
        self._locks = {name: asyncio.Lock() for name in self._services}
        self._closing = False

    async def start(self) -> None:
        """Start every instance of every service; return once each has started or failed."""
        for name in self._services:
            self._launch(name)
        await self._launched(*self._services)

    async def stop(self) -> None:
        """Stop every instance (``stop_signal``, SIGKILL after ``graceful_stop``).

        Their runs are recorded ``stopped``; when this returns no slot task is left.
        """
        self._closing = True
        slots = [slot for slots in self._slots.values() for slot in slots]
        await asyncio.gather(*(self._stop_slot(s) for s in slots), return_exceptions=True)

    async def restart(self, name: str) -> None:
        """Stop all instances of ``name`` and start them again with fresh failure counts.

        Returns once the new instances have started (or failed to). Raises
        :class:`TaskNotFound` if no service has that name.
        """
        self._require(name)
        async with self._locks[name]:
            await self._stop_slots(name)
            self._launch(name)
            await self._launched(name)

    async def stop_service(self, name: str) -> None:
        """Stop all instances of ``name``; they stay stopped until ``restart(name)``."""
        self._require(name)
        async with self._locks[name]:
            await self._stop_slots(name)

    def instances(self, name: str) -> list[Run]:
        """The active runs of ``name``'s instances, by ``replica_index``, as last recorded."""
        self._require(name)
        return [slot.run for slot in self._slots[name] if slot.run is not None]

    def given_up(self, name: str) -> list[int]:
        """Replica indexes of ``name`` left empty after ``start_retries`` fast failures."""
        self._require(name)
        return [slot.index for slot in self._slots[name] if slot.given_up]

    def _require(self, name: str) -> TaskSpec:
        try:
            return self._services[name]
        except KeyError:
            raise TaskNotFound(name) from None

    def _launch(self, name: str) -> None:
        if self._closing:
            return
        service = self._services[name]
        loop = asyncio.get_running_loop()
        self._slots[name] = [_Slot(service, i) for i in range(service.instances)]
        for slot in self._slots[name]:
            slot.task = loop.create_task(self._keep(slot), name=f"service {name}[{slot.index}]")

    async def _launched(self, *names: str) -> None:
        events = [slot.launched.wait() for name in names for slot in self._slots[name]]
        await asyncio.gather(*events)

    async def _stop_slots(self, name: str) -> None:
        slots = self._slots[name]
        await asyncio.gather(*(self._stop_slot(s) for s in slots), return_exceptions=True)

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
        )
        await self._repo.add(run)
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

    async def _record_end(self, slot: _Slot, reason: EndReason, code: int) -> None:
        run = slot.run
        if run is None:
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
        }
        return ProcessSpec(
            command=service.run, shell=service.shell, env=env, working_dir=service.working_dir
        )

    async def _terminate(self, slot: _Slot) -> None:
        process = slot.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                await process.terminate(slot.service.stop_signal, slot.service.graceful_stop)


def _name(slot: _Slot) -> tuple[str, int]:
    return slot.service.name, slot.index


async def _quietly(step: Awaitable[None]) -> None:
    """Await a clean-up step whose failure must not hide what is being handled."""
    try:
        await step
    except Exception:
        log.exception("clean-up after a service instance failed")
