"""Admission decides as ``domain.policies.admit`` does, for every policy over a grid of loads.

PostgreSQL makes the decision in ``runwarden_admit_many`` (migration 0006), a copy of the
domain's rule; this keeps the two from drifting apart.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

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


@pytest.mark.parametrize("burst", [1, 3])
async def test_admission_matches_the_domain_policy_for_every_load(
    repo: RunRepository, burst: int
) -> None:
    """Triggers made at once decide as if made one after another: on PostgreSQL a burst
    goes as one call of ``runwarden_admit_many``, decided set-wise."""
    for case, (overlap, max_concurrent, queue_max, running, pending) in enumerate(GRID):
        task = TaskSpec(
            name=f"grid-{burst}-{case}",
            run="true",
            on_overlap=overlap,
            max_concurrent=max_concurrent,
            queue_max=queue_max,
        )
        started = await _load(repo, task.name, running, pending)
        at = T0 + timedelta(minutes=1)
        made = [Run(new_id(at), task.name, at, TriggeredBy.API) for _ in range(burst)]

        admitted = await asyncio.gather(*(repo.admit(run, task) for run in made))

        load = TaskLoad(running=running, pending=pending)
        for run, result in zip(made, admitted, strict=True):
            expected = policies.admit(task, load)
            assert result.decision is expected, (case, overlap, max_concurrent, queue_max)
            stored = run.ended(EndReason.SKIPPED, at) if expected is Admission.SKIP else run
            assert result.run == stored
            assert await repo.get(run.id) == stored
            to_stop = policies.runs_to_terminate(task, started, load.pending)
            assert list(result.to_stop) == (to_stop if expected is Admission.TERMINATE else [])
            if expected is not Admission.SKIP:
                load = TaskLoad(running=load.running, pending=load.pending + 1)
