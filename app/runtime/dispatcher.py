"""Turns pending runs into processes and records how each one ends."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.runtime.output import RunOutput
from app.runtime.resilience import durably
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
from domain.run import EXIT_NOT_EXECUTED, EndReason, Run, RunStatus, end_reason_for_exit
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

RECLAIM_DELAY = 1.0
"""Seconds before a run whose slot was taken elsewhere (another node) is tried again, unless
the end of a run of its task somewhere in the cluster (``slot_freed``) says so sooner."""
PID_RECORD_DELAY = 1.0
"""Seconds a process lives before its pid is written on its own. The end of a shorter run
writes the pid with the rest of the row, which spares most short runs a write; crash
recovery finds orphans by their environment, not by this pid."""


@dataclass(slots=True)
class _Active:
    """A run this daemon has taken out of its queue, until its end is recorded."""

    run: Run
    task: TaskSpec
    process: RunningProcess | None = None
    timed_out: bool = False
    stopped: bool = False
    log_overflowed: bool = False
    abandoned: bool = False
    """This node was reaped: the run is no longer ours to record."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Dispatcher:
    """Runs each task's pending runs in FIFO order, ``max_concurrent`` at a time.

    A slot is taken in the database (``claim``) before a process is spawned, so the limit
    holds across daemons sharing one database. A pending retry waits for its
    ``not_before`` without holding up runs queued behind it.

    ``node`` names this node: it holds the runs it claims, and only it records their end.
    ``stop_elsewhere`` stops a run this dispatcher does not run (another node's): it asks
    the owner and returns once the end is recorded.
    """

    def __init__(
        self,
        repo: RunRepository,
        logs: LogStore,
        executor: Executor,
        clock: Clock,
        tasks: dict[str, TaskSpec],
        on_end: Callable[[Run], None] | None = None,
        node: Callable[[], str | None] = lambda: None,
        stop_elsewhere: Callable[[Run], Awaitable[None]] | None = None,
    ) -> None:
        self._repo = repo
        self._node = node
        self._stop_elsewhere = stop_elsewhere
        # Told of every end this dispatcher records (for metrics); must not raise or block.
        self._on_end = on_end
        self._logs = logs
        self._executor = executor
        self._clock = clock
        self._tasks = tasks
        self._queues: dict[str, deque[Run]] = {name: deque() for name in tasks}
        self._wakeups: dict[str, asyncio.TimerHandle] = {}
        # Runs whose claim found every slot taken (by other nodes): they wait, and the rest
        # of their task's queue behind them, until a slot frees somewhere.
        self._parked: dict[str, list[Run]] = {}
        self._parked_timers: dict[str, asyncio.TimerHandle] = {}
        self._active: dict[str, _Active] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._closing = False

    def running_count(self, task_name: str) -> int:
        return sum(1 for a in self._active.values() if a.run.task_name == task_name)

    def queued_count(self, task_name: str | None = None) -> int:
        """Runs this node holds that wait for a slot (queued, or parked: see ``_park``)."""
        if task_name is None:
            queued = sum(len(q) for q in self._queues.values())
            return queued + sum(len(p) for p in self._parked.values())
        return len(self._queues.get(task_name, ())) + len(self._parked.get(task_name, ()))

    def submit(self, run: Run) -> None:
        """Queue a recorded pending run; it starts as soon as its task has a free slot.

        A run recorded already claimed (``running``, see ``record_cron_tick``) starts now.
        """
        if run.task_name not in self._queues:
            return
        if run.status is RunStatus.RUNNING:
            active = self._active[run.id] = _Active(run=run, task=self._tasks[run.task_name])
            active.stopped = self._closing  # too late to start: recorded stopped instead
            self._spawn_worker(self._execute(active, claimed=run))
            return
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
            if self._stop_elsewhere is not None:
                await self._stop_elsewhere(run)  # another node's: its owner stops it
            else:
                await services.end_run(self._repo, run, EndReason.STOPPED, self._now())
            return
        active.stopped = True
        await self._terminate(active)
        await active.done.wait()

    @property
    def waiting_for_slots(self) -> bool:
        """Whether some run waits for another node to free a slot of its task."""
        return bool(self._parked)

    def slot_freed(self, task_name: str) -> None:
        """A run of ``task_name`` ended somewhere in the cluster: claim again now the runs
        that found its slots taken, first in, first out."""
        if (handle := self._parked_timers.pop(task_name, None)) is not None:
            handle.cancel()
        parked = self._parked.pop(task_name, [])
        queue = self._queues.get(task_name)
        if queue is None:
            return
        for run in sorted(parked, key=lambda r: (r.created_at, r.id), reverse=True):
            queue.appendleft(run)
        self._pump(task_name)

    def _cancel_timers(self) -> None:
        for handle in (*self._wakeups.values(), *self._parked_timers.values()):
            handle.cancel()
        self._wakeups.clear()
        self._parked_timers.clear()

    def _park(self, run: Run) -> None:
        self._parked.setdefault(run.task_name, []).append(run)
        if run.task_name not in self._parked_timers:
            loop = asyncio.get_running_loop()
            self._parked_timers[run.task_name] = loop.call_later(
                RECLAIM_DELAY, self.slot_freed, run.task_name
            )

    def stop_here(self, run_id: str) -> bool:
        """Stop a run this dispatcher runs, in the background (a request from another
        node); False if it does not run it."""
        active = self._active.get(run_id)
        if active is None or active.stopped:
            return active is not None
        self._spawn_worker(self.stop(active.run))
        return True

    async def abandon(self) -> None:
        """This node was reaped: kill every process at once (SIGKILL to its group), forget
        the queue, record nothing. A survivor has settled these runs already."""
        self._cancel_timers()
        self._parked.clear()
        for queue in self._queues.values():
            queue.clear()
        actives = list(self._active.values())
        for active in actives:
            active.abandoned = active.stopped = True
        await asyncio.gather(
            *(a.process.terminate("SIGKILL", 0.0) for a in actives if a.process is not None),
            return_exceptions=True,
        )

    def stop_soon(self, runs: list[Run]) -> None:
        """Stop runs in the background (the ``terminate`` overlap policy)."""
        for run in runs:
            self._spawn_worker(self.stop(run))

    async def shutdown(self) -> None:
        """Stop every running process, record it ``stopped``, and wait for the records.

        Queued runs stay ``pending`` in the store; the next start resumes them.
        """
        self._closing = True
        self._cancel_timers()
        for active in list(self._active.values()):
            active.stopped = True
        await asyncio.gather(
            *(self._terminate(a) for a in list(self._active.values())), return_exceptions=True
        )
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    def _now(self) -> datetime:
        return self._clock.now()

    def _spawn_worker(self, coro) -> None:  # type: ignore[no-untyped-def]
        worker = asyncio.get_running_loop().create_task(coro)
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    def reconfigure(self, tasks: dict[str, TaskSpec]) -> list[Run]:
        """Take a reloaded configuration. New tasks get a queue; changed tasks start their
        next runs with the new definition (running ones keep the one they started with);
        the queued runs of removed tasks are taken out and returned, for the caller to end.
        """
        self._tasks = tasks
        dropped: list[Run] = []
        for name in [n for n in self._queues if n not in tasks]:
            dropped.extend(self._queues.pop(name))
            dropped.extend(self._parked.pop(name, []))
            if (timer := self._parked_timers.pop(name, None)) is not None:
                timer.cancel()
            if (handle := self._wakeups.pop(name, None)) is not None:
                handle.cancel()
        for name in tasks:
            self._queues.setdefault(name, deque())
            self._pump(name)  # a raised max_concurrent may free slots at once
        return dropped

    def _pump(self, task_name: str) -> None:
        if self._closing or task_name not in self._tasks or task_name in self._parked:
            return
        task = self._tasks[task_name]
        queue = self._queues[task_name]
        now = self._now()
        while queue and self.running_count(task_name) < task.max_concurrent:
            ready = next((r for r in queue if r.not_before is None or r.not_before <= now), None)
            if ready is None:
                self._wake_at(task_name, min(r.not_before for r in queue if r.not_before))
                return
            queue.remove(ready)
            active = _Active(run=ready, task=task)
            self._active[ready.id] = active
            self._spawn_worker(self._execute(active))

    def _wake_at(self, task_name: str, when: datetime) -> None:
        if (old := self._wakeups.pop(task_name, None)) is not None:
            old.cancel()
        delay = max((when - self._now()).total_seconds(), 0.0)
        self._wakeups[task_name] = asyncio.get_running_loop().call_later(
            delay, self._pump, task_name
        )

    async def _execute(self, active: _Active, claimed: Run | None = None) -> None:
        try:
            await self._run_process(active, claimed)
        except Exception:
            log.exception("run %s of %s failed in the daemon", active.run.id, active.task.name)
            # Never leave the run active because of a bug: record it failed if we can (and
            # it is still ours to record).
            if not active.abandoned:
                with contextlib.suppress(Exception):
                    await services.end_run(
                        self._repo, active.run, EndReason.FAILED, self._now(), EXIT_NOT_EXECUTED
                    )
        finally:
            self._active.pop(active.run.id, None)
            active.done.set()
            self._pump(active.task.name)

    def _giving_up(self) -> bool:
        return self._closing

    async def _claim(self, active: _Active) -> Run | None:
        run, task = dataclasses.replace(active.run, node_id=self._node()), active.task
        claimed = await durably(
            lambda: services.claim_run(self._repo, task, run, self._now()),
            what=f"starting run {run.id}",
        )
        if claimed is not None:
            return claimed
        stored = await durably(lambda: self._repo.get(run.id), what=f"reading run {run.id}")
        if (
            stored is not None
            and stored.status is RunStatus.PENDING
            and stored.node_id in (None, run.node_id)
            and not active.stopped
        ):
            # Other nodes hold the task's slots: wait for one to free.
            self._park(stored)
        return None

    async def _run_process(self, active: _Active, claimed: Run | None) -> None:
        task = active.task
        running = claimed or await self._claim(active)
        if running is None:
            return
        active.run = running
        if active.stopped:
            await self._finish(active, EndReason.STOPPED, EXIT_NOT_EXECUTED, never_started=True)
            return
        output = RunOutput(
            running.id,
            self._logs,
            self._clock,
            task=task,
            on_overflow=lambda: self._overflow(active),
        )
        spec = ProcessSpec(
            command=task.run,
            shell=task.shell,
            env={
                **task.env,
                "RUNWARDEN_RUN_ID": running.id,
                "RUNWARDEN_TASK": task.name,
                "RUNWARDEN_NODE_ID": running.node_id or "",
            },
            working_dir=task.working_dir,
        )
        try:
            process = await self._executor.start(spec, output)
        except ProcessStartError as exc:
            await output.system(f"runwarden: {exc}")
            await output.close()
            await self._finish(active, EndReason.FAILED, EXIT_NOT_EXECUTED, never_started=True)
            return
        active.process = process
        output.open()
        if active.stopped:
            await self._terminate(active)
        active.run = dataclasses.replace(running, pid=process.pid)
        loop = asyncio.get_running_loop()
        pid_writer = loop.call_later(PID_RECORD_DELAY, self._record_pid, running, process.pid)
        timer = None
        if task.timeout is not None:
            timer = loop.call_later(task.timeout, self._time_out, active)
        try:
            code = await process.wait()
            if active.timed_out:
                await output.system(f"runwarden: killed after timeout of {task.timeout:g}s")
        except Exception:
            log.exception("capturing output of run %s failed", running.id)
            code = EXIT_NOT_EXECUTED
        finally:
            pid_writer.cancel()
            if timer is not None:
                timer.cancel()
            await output.close()
        reason = end_reason_for_exit(
            code,
            task.exit_codes,
            timed_out=active.timed_out,
            log_overflowed=active.log_overflowed or output.overflowed,
            stopped=active.stopped,
        )
        await self._finish(active, reason, code)

    async def _finish(
        self, active: _Active, reason: EndReason, code: int, *, never_started: bool = False
    ) -> None:
        run = active.run
        if active.abandoned:
            return  # reaped: the survivor recorded it crashed
        finished = await durably(
            lambda: services.finish_run(
                self._repo,
                active.task,
                run,
                reason,
                self._now(),
                code,
                never_started=never_started,
            ),
            what=f"recording the end of run {run.id}",
        )
        if finished is not None and self._on_end is not None:
            with contextlib.suppress(Exception):
                self._on_end(finished[0])
        if finished is not None and finished[1] is not None:
            retry = finished[1]
            log.info(
                "run %s of %s ended %s; retry %d at %s",
                run.id,
                run.task_name,
                reason,
                retry.retry_attempt,
                retry.not_before,
            )
            self.submit(retry)

    def _record_pid(self, running: Run, pid: int) -> None:
        async def record() -> None:
            with contextlib.suppress(Exception):
                # Only for operators; the run goes on without it, and its end writes it.
                await services.record_pid(self._repo, running, pid)

        self._spawn_worker(record())

    def _time_out(self, active: _Active) -> None:
        active.timed_out = True
        self._spawn_worker(self._terminate(active))

    def _overflow(self, active: _Active) -> None:
        if not active.log_overflowed:
            active.log_overflowed = True
            self._spawn_worker(self._terminate(active))

    async def _terminate(self, active: _Active) -> None:
        if active.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            await active.process.terminate(active.task.stop_signal, active.task.graceful_stop)
