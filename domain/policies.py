"""Pure policy decisions: overlap, retries, service restarts, the log budget.

Every function takes what it needs as arguments (counts, attempts, durations) and
returns a decision; none of them reads a clock or touches a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.run import EndReason, Run, TriggeredBy
from domain.tasks import Backoff, CatchUp, LogOnFull, OverlapPolicy, TaskSpec

RETRY_DELAY_CAP = 300.0
"""Seconds: no retry waits longer than five minutes."""
RESTART_DELAY_CAP = 60.0
"""Seconds: no service instance waits longer than a minute to be replaced."""

RETRYABLE = frozenset(
    {EndReason.FAILED, EndReason.TIMEOUT, EndReason.CRASHED, EndReason.LOG_OVERFLOW}
)
"""End reasons after which a run may be retried; never success, stopped or skipped."""


@dataclass(frozen=True, slots=True)
class TaskLoad:
    """How many runs of a task are active right now."""

    running: int
    pending: int

    @property
    def active(self) -> int:
        return self.running + self.pending


class Admission(StrEnum):
    """What to do with a new trigger of a task."""

    ACCEPT = "accept"
    """Record it pending; it starts when a slot is free (at once if one is)."""
    SKIP = "skip"
    """Record it ``skipped``: it never runs."""
    TERMINATE = "terminate"
    """Record it pending and stop the oldest running run(s) to make room."""


def admit(task: TaskSpec, load: TaskLoad) -> Admission:
    """The overlap policy's decision for one new trigger of ``task``.

    ``queue`` accepts while fewer than ``queue_max`` runs wait; ``skip`` accepts only if a
    slot is free now; ``terminate`` always accepts and makes room when none is free.
    """
    if load.active < task.max_concurrent:
        return Admission.ACCEPT
    match task.on_overlap:
        case OverlapPolicy.SKIP:
            return Admission.SKIP
        case OverlapPolicy.TERMINATE:
            return Admission.TERMINATE
        case _:
            waiting_after = load.pending + 1 - max(task.max_concurrent - load.running, 0)
            return Admission.ACCEPT if waiting_after <= task.queue_max else Admission.SKIP


def runs_to_terminate(task: TaskSpec, running: list[Run], pending: int) -> list[Run]:
    """The oldest running runs to stop so the new run (and those waiting) fit."""
    excess = len(running) + pending + 1 - task.max_concurrent
    oldest = sorted(running, key=lambda r: (r.start_at or r.created_at, r.id))
    return oldest[: max(excess, 0)]


def retry_delay(task: TaskSpec, attempt: int) -> float:
    """Seconds before the ``attempt``-th retry (1-based), capped at five minutes."""
    base = task.retry_delay
    match task.retry_backoff:
        case Backoff.LINEAR:
            delay = base * attempt
        case Backoff.EXPONENTIAL:
            delay = base * 2 ** min(attempt - 1, 32)
        case _:
            delay = base
    return min(delay, RETRY_DELAY_CAP)


def next_retry(task: TaskSpec, ended: Run, now: datetime, new_id: str) -> Run | None:
    """The pending run that retries ``ended``, or None if no retry is due.

    Retries follow failed, timeout, crashed and log_overflow ends, keep the original
    trigger, and never apply to ``cloud`` runs, whose orchestrator retries them itself.
    """
    if ended.end_reason not in RETRYABLE or ended.triggered_by is TriggeredBy.CLOUD:
        return None
    attempt = ended.retry_attempt + 1
    if task.is_service or attempt > task.retry_attempts:
        return None
    return Run(
        id=new_id,
        task_name=ended.task_name,
        created_at=now,
        triggered_by=ended.triggered_by,
        retry_attempt=attempt,
        retry_of_run_id=ended.id,
        not_before=now + timedelta(seconds=retry_delay(task, attempt)),
    )


def restart_delay(task: TaskSpec, fast_failures: int) -> float:
    """Seconds before a service instance is replaced after ``fast_failures`` quick deaths.

    The delay grows by ``restart_backoff`` from ``restart_delay`` and is capped at 60 s;
    an instance that stayed up for ``healthy_after`` resets the count to 0.
    """
    base = task.restart_delay
    n = max(fast_failures, 1)
    match task.restart_backoff:
        case Backoff.CONSTANT:
            delay = base
        case Backoff.LINEAR:
            delay = base * n
        case _:
            delay = base * 2 ** min(n - 1, 32)
    return min(delay, RESTART_DELAY_CAP)


class LogVerdict(StrEnum):
    """What to do with output once a run's log budget is known."""

    KEEP = "keep"
    DROP = "drop"
    """Discard the new output (``drop_new``); the process continues."""
    TRIM = "trim"
    """Store it and discard the oldest stored output (``drop_old``)."""
    KILL = "kill"
    """Stop the process: ``kill_task`` ends the run ``log_overflow``."""


def log_verdict(task: TaskSpec, stored_bytes: int, incoming_bytes: int) -> LogVerdict:
    """Whether ``incoming_bytes`` more output fits ``log_max_size``, and if not, what to do."""
    if stored_bytes + incoming_bytes <= task.log_max_size:
        return LogVerdict.KEEP
    match task.log_on_full:
        case LogOnFull.DROP_NEW:
            return LogVerdict.DROP
        case LogOnFull.KILL_TASK:
            return LogVerdict.KILL
        case _:
            return LogVerdict.TRIM


ON_TIME = timedelta(seconds=5)
"""How late the newest due tick may be found and still count as on time."""


def select_ticks(task: TaskSpec, ticks: list[datetime], now: datetime) -> list[datetime]:
    """Which of the ticks due since the last look to run, oldest first.

    In normal operation each look finds one new tick, the newest, and it runs. Any older
    tick, or a newest one found more than ``ON_TIME`` late, was missed (the daemon or its
    database was down) and follows ``catch_up``: ``latest`` re-runs the most recent missed
    tick once, ``all`` runs up to ``max_catch_up_runs`` of them, ``skip`` none.
    """
    if not ticks:
        return []
    on_time = ticks[-1:] if now - ticks[-1] <= ON_TIME else []
    missed = ticks[: len(ticks) - len(on_time)]
    match task.catch_up:
        case CatchUp.ALL:
            chosen = missed[-task.max_catch_up_runs :] if task.max_catch_up_runs else []
        case CatchUp.SKIP:
            chosen = []
        case _:
            chosen = missed[-1:]
    return chosen + on_time
