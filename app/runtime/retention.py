"""Retention: old runs and their logs are removed per ``keep_runs`` and ``keep_for``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from domain.ports import Clock, RunRepository
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

INTERVAL = 600.0
"""Seconds between passes; one pass also runs at start."""
BATCH = 500
"""Runs deleted per transaction: short transactions never hold locks for long."""
PAUSE = 0.05
"""Seconds between batches, so a large backlog does not monopolise the database."""


async def prune_once(repo: RunRepository, clock: Clock, tasks: dict[str, TaskSpec]) -> int:
    """Apply every task's retention once; returns how many runs were removed."""
    removed = 0
    now = clock.now()
    for task in tasks.values():
        if task.keep_runs is None and task.keep_for is None:
            continue
        ended_before = now - timedelta(seconds=task.keep_for) if task.keep_for else None
        while True:
            deleted = await repo.prune(task.name, task.keep_runs, ended_before, BATCH)
            removed += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(PAUSE)
    return removed


async def _always() -> bool:
    return True


async def retention_loop(
    repo: RunRepository,
    clock: Clock,
    tasks: Callable[[], dict[str, TaskSpec]],
    may_run: Callable[[], Awaitable[bool]] = _always,
) -> None:
    """Prune now and then every ``INTERVAL`` seconds, until cancelled.

    ``tasks`` gives the configured tasks of the moment (a reload changes them); ``may_run``
    is asked before each pass (one node of a cluster holds the duty)."""
    while True:
        try:
            if not await may_run():
                await asyncio.sleep(INTERVAL)
                continue
            removed = await prune_once(repo, clock, tasks())
            if removed:
                log.info("retention removed %d old runs", removed)
        except Exception:
            log.warning("retention pass failed; will retry", exc_info=True)
        await asyncio.sleep(INTERVAL)
