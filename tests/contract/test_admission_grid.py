"""Admission decides as ``domain.policies.admit`` does, for every policy over a grid of loads.

PostgreSQL makes the decision in ``runwarden_admit_many`` (migration 0006), a copy of the
domain's rule; this keeps the two from drifting apart.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from domain import policies
from domain.policies import Admission, TaskLoad
from domain.ports import RunRepository
from domain.run import EndReason, Run, TriggeredBy
from domain.tasks import OverlapPolicy, TaskSpec
from tests.contract.conftest import new_id

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

GRID = list(
    itertools.product(
        list(OverlapPolicy),  # on_overlap
        (1, 2),  # max_concurrent
        (0, 1),  # queue_max
        range(3),  # running
        range(3),  # pending
    )
)


async def _load(repo: RunRepository, name: str, running: int, pending: int) -> list[Run]:
    started = []
    for i in range(running):
        at = T0 + timedelta(seconds=i)
        run = Run(new_id(at), name, at, TriggeredBy.API).started(at, pid=100 + i)
        await repo.add(run)
        started.append(run)
    for i in range(pending):
        at = T0 + timedelta(seconds=10 + i)
        await repo.add(Run(new_id(at), name, at, TriggeredBy.API))
    return started


async def test_admission_matches_the_domain_policy_for_every_load(repo: RunRepository) -> None:
    for case, (overlap, max_concurrent, queue_max, running, pending) in enumerate(GRID):
        task = TaskSpec(
            name=f"grid-{case}",
            run="true",
            on_overlap=overlap,
            max_concurrent=max_concurrent,
            queue_max=queue_max,
        )
        started = await _load(repo, task.name, running, pending)
        at = T0 + timedelta(minutes=1)
        run = Run(new_id(at), task.name, at, TriggeredBy.API)

        admitted = await repo.admit(run, task)

        expected = policies.admit(task, TaskLoad(running=running, pending=pending))
        assert admitted.decision is expected, (overlap, max_concurrent, queue_max, running)
        stored = run.ended(EndReason.SKIPPED, at) if expected is Admission.SKIP else run
        assert admitted.run == stored
        assert await repo.get(run.id) == stored
        to_stop = policies.runs_to_terminate(task, started, pending)
        assert list(admitted.to_stop) == (to_stop if expected is Admission.TERMINATE else [])


async def test_triggers_made_at_once_decide_as_if_made_one_after_another(
    repo: RunRepository,
) -> None:
    """On PostgreSQL these go as one batch (``runwarden_admit_many``), decided set-wise."""
    for case, (overlap, max_concurrent, queue_max, running, pending) in enumerate(GRID):
        task = TaskSpec(
            name=f"burst-{case}",
            run="true",
            on_overlap=overlap,
            max_concurrent=max_concurrent,
            queue_max=queue_max,
        )
        started = await _load(repo, task.name, running, pending)
        at = T0 + timedelta(minutes=1)
        burst = [Run(new_id(at), task.name, at, TriggeredBy.API) for _ in range(3)]

        admitted = await asyncio.gather(*(repo.admit(run, task) for run in burst))

        load = TaskLoad(running=running, pending=pending)
        for run, result in zip(burst, admitted, strict=True):
            expected = policies.admit(task, load)
            assert result.decision is expected, (case, overlap, max_concurrent, queue_max)
            stored = run.ended(EndReason.SKIPPED, at) if expected is Admission.SKIP else run
            assert result.run == stored
            assert await repo.get(run.id) == stored
            to_stop = policies.runs_to_terminate(task, started, load.pending)
            assert list(result.to_stop) == (to_stop if expected is Admission.TERMINATE else [])
            if expected is not Admission.SKIP:
                load = TaskLoad(running=load.running, pending=load.pending + 1)
