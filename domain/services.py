"""Use cases: the steps of a run's life, each one recorded through the ports.

These functions decide and record; they do not wait on processes. The runtime in
``app/runtime.py`` calls them as processes start and end.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from ulid import ULID

from domain.errors import NotTriggerable, RunNotActive, RunNotFound, TaskNotFound, TriggerForbidden
from domain.listing import RunPage, RunQuery
from domain.ports import Clock, RunRepository
from domain.run import EndReason, Run, RunStatus, TriggeredBy
from domain.tasks import TaskSpec


def new_run_id(at: datetime) -> str:
    """A ULID whose time part is ``at``, so ids sort with creation time."""
    return str(ULID.from_datetime(at))


def find_task(tasks: dict[str, TaskSpec], name: str) -> TaskSpec:
    """The configured task of that name, or :class:`TaskNotFound`."""
    try:
        return tasks[name]
    except KeyError:
        raise TaskNotFound(name) from None


async def trigger_run(
    repo: RunRepository,
    clock: Clock,
    task: TaskSpec,
    triggered_by: TriggeredBy = TriggeredBy.API,
) -> Run:
    """Record a pending run of ``task`` requested now through the API.

    Raises :class:`NotTriggerable` for services and :class:`TriggerForbidden` for
    ``api_trigger = false`` tasks.
    """
    if task.is_service:
        raise NotTriggerable(task.name)
    if triggered_by is TriggeredBy.API and not task.api_trigger:
        raise TriggerForbidden(task.name)
    now = clock.now()
    run = Run(id=new_run_id(now), task_name=task.name, created_at=now, triggered_by=triggered_by)
    await repo.add(run)
    return run


async def record_cron_tick(repo: RunRepository, task: TaskSpec, tick: datetime) -> Run | None:
    """Record the pending run of one cron tick, or None if that tick is already recorded."""
    run = Run(
        id=new_run_id(tick), task_name=task.name, created_at=tick, triggered_by=TriggeredBy.CRON
    )
    return run if await repo.add_cron_run(run) else None


async def start_run(repo: RunRepository, run: Run, at: datetime, pid: int) -> Run | None:
    """Record that ``run``'s process exists; None if the run was ended meanwhile."""
    started = run.started(at, pid)
    return started if await repo.replace(started, RunStatus.PENDING) else None


async def end_run(
    repo: RunRepository, run: Run, reason: EndReason, at: datetime, exit_code: int | None = None
) -> Run | None:
    """Record the end of ``run``; None if another actor ended it first."""
    ended = run.ended(reason, at, exit_code)
    return ended if await repo.replace(ended, run.status) else None


async def get_run(repo: RunRepository, run_id: str, task_name: str | None = None) -> Run:
    """The run of that id (and task, if given), or :class:`RunNotFound`."""
    run = await repo.get(run_id)
    if run is None or (task_name is not None and run.task_name != task_name):
        raise RunNotFound(run_id, task_name)
    return run


async def require_active(repo: RunRepository, run_id: str, task_name: str) -> Run:
    """The run, if it can still be stopped; :class:`RunNotActive` if it has ended."""
    run = await get_run(repo, run_id, task_name)
    if not run.is_active:
        raise RunNotActive(run.id, run.status.value)
    return run


async def list_runs(repo: RunRepository, query: RunQuery) -> RunPage:
    """One page of runs; a task with no runs (or no longer configured) gives an empty page."""
    return await repo.list(query)


async def reconcile_on_start(
    repo: RunRepository, clock: Clock, configured: Collection[str]
) -> list[Run]:
    """Settle what a previous daemon left active.

    Runs left ``running`` end ``crashed`` (exit -2): their daemon died with them. Runs left
    ``pending`` of tasks no longer configured end ``skipped``. Returns the other pending
    runs, oldest first, for the runtime to resume.
    """
    now = clock.now()
    pending: list[Run] = []
    for run in await repo.active():
        if run.status is RunStatus.RUNNING:
            await end_run(repo, run, EndReason.CRASHED, now)
        elif run.task_name not in configured:
            await end_run(repo, run, EndReason.SKIPPED, now)
        else:
            pending.append(run)
    return pending
