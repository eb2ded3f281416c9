"""The run: one execution attempt of a task, and the only ways its state may change.

A run moves ``pending -> running -> ended`` or ``pending -> ended``; nothing leaves
``ended``. Every change returns a new :class:`Run`, so callers can hand the old value to a
repository as the state they expect to replace (compare-and-set).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import IllegalTransition


class RunStatus(StrEnum):
    """The phase of a run (the seed's ``status``)."""

    PENDING = "pending"
    """Triggered, not yet started: waiting for a slot or about to spawn."""
    RUNNING = "running"
    """A process exists for it."""
    ENDED = "ended"
    """Final; ``end_reason`` says why."""


class EndReason(StrEnum):
    """Why a run ended: exactly the seed's seven values."""

    SUCCESS = "success"
    """The process exited with one of the task's success codes."""
    FAILED = "failed"
    """The process exited with another code, or could not be started (exit -1)."""
    STOPPED = "stopped"
    """An operator stopped it, the overlap policy replaced it, or the daemon shut down."""
    TIMEOUT = "timeout"
    """It outlived the task's ``timeout`` and was killed."""
    CRASHED = "crashed"
    """The daemon died while it ran (exit -2)."""
    SKIPPED = "skipped"
    """It never ran: turned away by the overlap policy or a duplicated tick (exit -1)."""
    LOG_OVERFLOW = "log_overflow"
    """Its output exceeded the log budget under ``log_on_full = "kill_task"``."""


class TriggeredBy(StrEnum):
    """What created a run."""

    CRON = "cron"
    """A scheduler tick or a catch-up; retries inherit it."""
    API = "api"
    """A client of the HTTP API, or the supervisor starting a service instance."""
    CLOUD = "cloud"
    """An external orchestrator; carries ``external_execution_id``."""


EXIT_NOT_EXECUTED = -1
"""Exit code of a run that was killed by a signal, skipped, or could not start."""
EXIT_CRASHED = -2
"""Exit code of a run found ``running`` after the daemon died."""

# Which end reasons each phase may end with. A pending run never had a process, so it can
# only be turned away, stopped while queued, fail to start, or be lost with the daemon.
_ENDINGS: dict[RunStatus, frozenset[EndReason]] = {
    RunStatus.PENDING: frozenset(
        {EndReason.SKIPPED, EndReason.STOPPED, EndReason.FAILED, EndReason.CRASHED}
    ),
    RunStatus.RUNNING: frozenset(EndReason) - {EndReason.SKIPPED},
    RunStatus.ENDED: frozenset(),
}

# End reasons whose exit code is fixed by the contract, whatever the process did.
_FIXED_EXIT: dict[EndReason, int] = {
    EndReason.SKIPPED: EXIT_NOT_EXECUTED,
    EndReason.CRASHED: EXIT_CRASHED,
}


@dataclass(frozen=True, slots=True)
class Run:
    """One execution attempt of a task, as recorded."""

    id: str
    task_name: str
    created_at: datetime
    triggered_by: TriggeredBy
    status: RunStatus = RunStatus.PENDING
    end_reason: EndReason | None = None
    exit_code: int = 0
    start_at: datetime | None = None
    end_at: datetime | None = None
    replica_index: int = 0
    retry_attempt: int = 0
    retry_of_run_id: str | None = None
    external_execution_id: str | None = None
    pid: int | None = None
    not_before: datetime | None = None
    """A pending run (a retry) may not start before this instant."""
    node_id: str | None = None
    """The node that holds it: whose queue has it while pending, whose process it is while
    running (only that node records its end). None: nobody's yet (any node may adopt it)."""

    def started(self, at: datetime, pid: int | None = None) -> Run:
        """The run once its process exists."""
        if self.status is not RunStatus.PENDING:
            raise IllegalTransition(self.id, self.status, RunStatus.RUNNING)
        return dataclasses.replace(self, status=RunStatus.RUNNING, start_at=at, pid=pid)

    def ended(
        self,
        reason: EndReason,
        at: datetime,
        exit_code: int | None = None,
        *,
        never_started: bool = False,
    ) -> Run:
        """The run once it is over.

        ``exit_code`` is what the process returned (already -1 when a signal killed it);
        reasons that fix the code (skipped -1, crashed -2) override it, and a run that never
        started records -1. ``never_started`` marks a run that held a slot but whose process
        could not be spawned: it keeps no ``start_at``.
        """
        if reason not in _ENDINGS[self.status]:
            raise IllegalTransition(self.id, self.status, RunStatus.ENDED, reason)
        if reason in _FIXED_EXIT:
            code = _FIXED_EXIT[reason]
        elif self.status is RunStatus.PENDING or exit_code is None or never_started:
            code = EXIT_NOT_EXECUTED
        else:
            code = exit_code
        start_at = None if never_started else self.start_at
        return dataclasses.replace(
            self,
            status=RunStatus.ENDED,
            end_reason=reason,
            exit_code=code,
            end_at=at,
            start_at=start_at,
        )

    @property
    def is_active(self) -> bool:
        """Pending or running: the run still holds or awaits a slot."""
        return self.status is not RunStatus.ENDED

    @property
    def duration_seconds(self) -> float:
        """``end_at - start_at``; 0 for runs that have not ended or never started."""
        if self.end_at is None or self.start_at is None:
            return 0.0
        return (self.end_at - self.start_at).total_seconds()


def end_reason_for_exit(
    exit_code: int,
    success_codes: frozenset[int],
    *,
    timed_out: bool = False,
    log_overflowed: bool = False,
    stopped: bool = False,
) -> EndReason:
    """Pick the end reason of a process that has exited.

    Precedence when several apply: timeout, log_overflow, stopped, then the exit code.
    """
    if timed_out:
        return EndReason.TIMEOUT
    if log_overflowed:
        return EndReason.LOG_OVERFLOW
    if stopped:
        return EndReason.STOPPED
    return EndReason.SUCCESS if exit_code in success_codes else EndReason.FAILED
