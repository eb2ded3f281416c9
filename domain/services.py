"""Use cases: the steps of a run's life, each one recorded through the ports.

These functions decide and record; they do not wait on processes. The runtime in
``app/runtime.py`` calls them as processes start and end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ulid import ULID

from domain import policies
from domain.errors import (
    NotTriggerable,
    RunNotActive,
    RunNotFound,
    RunStillActive,
    TaskNotFound,
    TriggerForbidden,
)
from domain.listing import ListedRun, RunPage, RunQuery
from domain.ports import Admitted, Clock, LogStore, RunRepository
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
    external_execution_id: str | None = None,
    node_id: str | None = None,
) -> tuple[Admitted, bool]:
    """Record a trigger of ``task`` through the API, under its overlap policy.

    With ``external_execution_id`` it is a ``cloud`` trigger, idempotent on that id. The
    run is held by ``node_id`` (the node that queues it).
    Returns the admission and whether it created a run (False: a repeat of a cloud id).
    Raises :class:`NotTriggerable` for services and :class:`TriggerForbidden` for
    ``api_trigger = false`` tasks.
    """
    if task.is_service:
        raise NotTriggerable(task.name)
    if not task.api_trigger:
        raise TriggerForbidden(task.name)
    now = clock.now()
    run = Run(
        id=new_run_id(now),
        task_name=task.name,
        created_at=now,
        triggered_by=TriggeredBy.CLOUD if external_execution_id else TriggeredBy.API,
        external_execution_id=external_execution_id,
        node_id=node_id,
    )
    admitted = await repo.admit(run, task)
    return admitted, admitted.run.id == run.id


async def record_cron_tick(
    repo: RunRepository,
    task: TaskSpec,
    tick: datetime,
    start_at: datetime | None = None,
    node_id: str | None = None,
) -> Admitted | None:
    """Record one cron tick under the overlap policy; None if the tick was recorded before.

    With ``start_at`` a tick that finds a free slot (and nothing queued) is recorded
    running from ``start_at``: claimed in the same write, ready for its process, held by
    ``node_id`` (which starts it; a tick is recorded, so started, by one node only).
    """
    run = Run(
        id=new_run_id(tick),
        task_name=task.name,
        created_at=tick,
        triggered_by=TriggeredBy.CRON,
        node_id=node_id,
    )
    admitted = await repo.admit(run, task, start_at)
    return admitted if admitted.run.id == run.id else None


async def claim_run(repo: RunRepository, task: TaskSpec, run: Run, at: datetime) -> Run | None:
    """Take a slot for a pending run: it is ``running`` from ``at`` if one was free."""
    return await repo.claim(run, at, task.max_concurrent)


async def start_run(repo: RunRepository, run: Run, at: datetime, pid: int) -> Run | None:
    """Record that a pending ``run``'s process exists (runs outside any overlap policy,
    such as service instances); None if the run was ended meanwhile."""
    started = run.started(at, pid)
    return started if await repo.replace(started, RunStatus.PENDING) else None


async def record_pid(repo: RunRepository, run: Run, pid: int) -> Run:
    """Remember the process group of a running run (for recovery and operators)."""
    with_pid = dataclasses.replace(run, pid=pid)
    await repo.replace(with_pid, RunStatus.RUNNING)
    return with_pid


async def end_run(
    repo: RunRepository, run: Run, reason: EndReason, at: datetime, exit_code: int | None = None
) -> Run | None:
    """Record the end of ``run`` without a retry; None if another actor ended it first."""
    ended = run.ended(reason, at, exit_code)
    return ended if await repo.replace(ended, run.status) else None


async def finish_run(
    repo: RunRepository,
    task: TaskSpec | None,
    run: Run,
    reason: EndReason,
    at: datetime,
    exit_code: int | None = None,
    *,
    never_started: bool = False,
) -> tuple[Run, Run | None] | None:
    """Record the end of ``run`` and, in the same transaction, its retry if one is due.

    Returns (ended run, retry or None), or None if another actor ended it first.
    """
    ended = run.ended(reason, at, exit_code, never_started=never_started)
    retry = policies.next_retry(task, ended, at, new_run_id(at)) if task else None
    if retry is not None:
        # Held by the node that recorded the end: it queues the retry itself.
        retry = dataclasses.replace(retry, node_id=run.node_id)
    if not await repo.replace(ended, run.status, retry):
        return None
    return ended, retry


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


async def delete_run(repo: RunRepository, logs: LogStore, run_id: str, task_name: str) -> Run:
    """Remove an ended run of ``task_name`` and its log; returns what was removed.

    :class:`RunNotFound` if absent (or of another task), :class:`RunStillActive` while it is
    pending or running.
    """
    run = await get_run(repo, run_id, task_name)
    if run.is_active:
        raise RunStillActive(run.id, run.status.value)
    if not await repo.delete(run.id):
        raise RunNotFound(run_id, task_name)  # deleted meanwhile by another client
    # Postgres drops the log with the run; a store that does not cascade needs telling.
    await logs.delete(run.id)
    return run


FAILURE_REASONS = frozenset(
    {EndReason.FAILED, EndReason.TIMEOUT, EndReason.CRASHED, EndReason.LOG_OVERFLOW}
)
"""End reasons that count as failures: the process did not do its job. ``stopped`` (an
operator's or a policy's decision) and ``skipped`` (it never ran) are neither success nor
failure."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Run counts over every task, and the latest failure."""

    total: int
    """Every stored run, whatever its status."""
    success: int
    """Runs that ended ``success``."""
    failed: int
    """Runs that ended with one of :data:`FAILURE_REASONS`."""
    last_failure: Run | None
    """The run among those that ended last."""


async def summarize_runs(repo: RunRepository) -> RunSummary:
    """Totals from the repository's counters, and the latest failure by end time."""
    counts = await repo.counts()
    return RunSummary(
        total=sum(c.n for c in counts),
        success=sum(c.n for c in counts if c.end_reason is EndReason.SUCCESS),
        failed=sum(c.n for c in counts if c.end_reason in FAILURE_REASONS),
        last_failure=await repo.last_ended(FAILURE_REASONS),
    )


async def newest_runs(
    repo: RunRepository, task_names: Sequence[str], limit: int, ended_only: bool = False
) -> dict[str, Sequence[ListedRun]]:
    """Each task's newest ``limit`` runs (ended ones only, if asked), newest first."""
    return await repo.newest(task_names, limit, ended_only)


async def list_runs(repo: RunRepository, query: RunQuery) -> RunPage:
    """One page of runs; a task with no runs (or no longer configured) gives an empty page."""
    return await repo.list(query)
