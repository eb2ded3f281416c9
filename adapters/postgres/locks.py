"""Row and advisory locks that serialize decisions about one task's runs.

Admission, claiming and pruning of a task take a transaction-scoped advisory lock keyed by
the task's name, so each decides on a load no concurrent transaction can change under it.
The two-key form lives in a different lock space from the single-key migration lock, and a
hash collision between two task names only makes them wait for each other.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

TASK_LOCK_SPACE = 0x72770001
"""First key of every per-task advisory lock ("rw" and a version): fits in an int4."""

SLOT_LOCK_SPACE = 0x72770002
"""First key of the per-task lock that claims take (``runwarden_claim_many``).

Claims do not take the task lock: a claim moves a run from pending to running, which leaves
the number of active runs (all an admission decision depends on) as it was, so claims need
to be serialized only with each other (and with an admit that stores a run running). With
one lock, every claim of a busy task waited for the batch of admits in progress."""

_LOCK_TASK = sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:task))")

CounterKey = tuple[str, str, str]
"""(task_name, status, end_reason or '') of a ``run_counts`` row."""


async def lock_task(conn: AsyncConnection, task_name: str) -> None:
    """Hold the task's lock until ``conn``'s transaction ends."""
    await conn.execute(_LOCK_TASK, {"space": TASK_LOCK_SPACE, "task": task_name})


async def lock_slots(conn: AsyncConnection, task_name: str) -> None:
    """Hold the task's slot lock (the claims' lock) until ``conn``'s transaction ends."""
    await conn.execute(_LOCK_TASK, {"space": SLOT_LOCK_SPACE, "task": task_name})


def counter_lock_order(keys: list[CounterKey]) -> list[CounterKey]:
    """The ``run_counts`` rows a multi-statement transaction will move, in locking order.

    The counting trigger locks the rows of one statement in key order, but two statements
    of one transaction (end a run, then insert its retry) would take theirs out of order
    and could deadlock with a run of the same task starting meanwhile. Touching each row
    first (``runwarden_replace`` does, in the order given), sorted as the trigger sorts,
    takes every lock up front in the same order.
    """
    # Task names compare by code point (COLLATE "C"); statuses and end reasons are
    # lower-case words that differ before any "_", so every collation orders them as
    # Python does.
    return sorted(set(keys))
