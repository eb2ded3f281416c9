"""Turns pending runs into processes and records how each one ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from app.runtime.output import RunOutput
from domain import services
from domain.ports import (
    Clock,
    Executor,
    LogStore,
    ProcessSpec,
    ProcessStartError,
    RunningProcess,
    RunRepository,
)
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, end_reason_for_exit
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Active:
    """A run this daemon has taken out of its queue, until its end is recorded."""

    run: Run
    task: TaskSpec
    process: RunningProcess | None = None
    timed_out: bool = False
    stopped: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Dispatcher:
    """Runs each task's pending runs in FIFO order, ``max_concurrent`` at a time."""

    def __init__(
        self,
        repo: RunRepository,
        logs: LogStore,
        executor: Executor,
        clock: Clock,
        tasks: dict[str, TaskSpec],
    ) -> None:
        self._repo = repo
        self._logs = logs
        self._executor = executor
        self._clock = clock
        self._tasks = tasks
        self._queues: dict[str, deque[Run]] = {name: deque() for name in tasks}
        self._active: dict[str, _Active] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._closing = False

    def running_count(self, task_name: str) -> int:
        return sum(1 for a in self._active.values() if a.run.task_name == task_name)

    def queued_count(self, task_name: str) -> int:
        return len(self._queues.get(task_name, ()))

    def submit(self, run: Run) -> None:
        """Queue a recorded pending run; it starts as soon as its task has a free slot."""
        self._queues[run.task_name].append(run)
        self._pump(run.task_name)

    async def stop(self, run: Run) -> None:
        """Stop a pending or running run and wait until its end is recorded."""
        queue = self._queues.get(run.task_name)
        if queue is not None:
            for queued in list(queue):
                if queued.id == run.id:
                    queue.remove(queued)
                    await services.end_run(self._repo, queued, EndReason.STOPPED, self._now())
                    return
        active = self._active.get(run.id)
        if active is None:
            # Not ours (another daemon's, or left by a previous one): settle it in the store.
            await services.end_run(self._repo, run, EndReason.STOPPED, self._now())
            return
        active.stopped = True
        await self._terminate(active)
        await active.done.wait()

    async def shutdown(self) -> None:
        """Stop every running process, record it ``stopped``, and wait for the records.

        Queued runs stay ``pending`` in the store; the next start resumes them.
        """
        self._closing = True
        for active in list(self._active.values()):
            active.stopped = True
        await asyncio.gather(
            *(self._terminate(a) for a in list(self._active.values())), return_exceptions=True
        )
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)

    def _now(self) -> datetime:
        return self._clock.now()

    def _pump(self, task_name: str) -> None:
        if self._closing:
            return
        task = self._tasks[task_name]
        queue = self._queues[task_name]
        while queue and self.running_count(task_name) < task.max_concurrent:
            run = queue.popleft()
            active = _Active(run=run, task=task)
            self._active[run.id] = active
            worker = asyncio.get_running_loop().create_task(self._execute(active))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def _execute(self, active: _Active) -> None:
        try:
            await self._run_process(active)
        except Exception:
            log.exception("run %s of %s failed in the daemon", active.run.id, active.task.name)
        finally:
            self._active.pop(active.run.id, None)
            active.done.set()
            self._pump(active.task.name)

    async def _run_process(self, active: _Active) -> None:
        run, task = active.run, active.task
        output = RunOutput(run.id, self._logs, self._clock)
        spec = ProcessSpec(
            command=task.run,
            shell=task.shell,
            env={**task.env, "RUNWARDEN_RUN_ID": run.id, "RUNWARDEN_TASK": task.name},
            working_dir=task.working_dir,
        )
        try:
            process = await self._executor.start(spec, output)
        except ProcessStartError as exc:
            await output.system(f"runwarden: {exc}")
            await output.close()
            await services.end_run(
                self._repo, run, EndReason.FAILED, self._now(), EXIT_NOT_EXECUTED
            )
            return
        active.process = process
        output.open()
        started = await services.start_run(self._repo, run, self._now(), process.pid)
        if started is None or active.stopped:
            # Stopped while it was being spawned: the process must not outlive the run.
            active.stopped = True
            await self._terminate(active)
        timer = None
        if task.timeout is not None:
            timer = asyncio.get_running_loop().call_later(task.timeout, self._time_out, active)
        try:
            code = await process.wait()
            if active.timed_out:
                await output.system(f"runwarden: killed after timeout of {task.timeout:g}s")
        finally:
            if timer is not None:
                timer.cancel()
            await output.close()
        if started is None:
            return
        reason = end_reason_for_exit(
            code, task.exit_codes, timed_out=active.timed_out, stopped=active.stopped
        )
        await services.end_run(self._repo, started, reason, self._now(), code)

    def _time_out(self, active: _Active) -> None:
        active.timed_out = True
        worker = asyncio.get_running_loop().create_task(self._terminate(active))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _terminate(self, active: _Active) -> None:
        if active.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            await active.process.terminate(active.task.stop_signal, active.task.graceful_stop)
