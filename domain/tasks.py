"""What the domain knows of a configured task or service: plain, validated values.

``app/config.py`` turns ``runwarden.toml`` into these; nothing here parses text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TaskKind(StrEnum):
    """A task runs on triggers; a service keeps ``instances`` processes alive."""

    TASK = "task"
    SERVICE = "service"


class OverlapPolicy(StrEnum):
    """What a trigger does when ``max_concurrent`` runs are already active."""

    QUEUE = "queue"
    """Wait, first in first out, up to ``queue_max`` waiting runs."""
    SKIP = "skip"
    """Record the new run as ``skipped``."""
    TERMINATE = "terminate"
    """Stop the oldest active run and start the new one."""


class CatchUp(StrEnum):
    """Which cron ticks missed while the daemon was down run at start."""

    LATEST = "latest"
    ALL = "all"
    SKIP = "skip"


class Backoff(StrEnum):
    """How the delay between attempts grows."""

    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class LogOnFull(StrEnum):
    """What happens when a run's output exceeds ``log_max_size``."""

    DROP_OLD = "drop_old"
    DROP_NEW = "drop_new"
    KILL_TASK = "kill_task"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One ``[tasks.NAME]`` or ``[services.NAME]`` table, defaults applied.

    Durations are seconds; sizes are bytes; ``timezone`` is an IANA zone name that has
    already been checked to exist.
    """

    name: str
    run: str
    kind: TaskKind = TaskKind.TASK
    description: str | None = None
    group: str | None = None
    cron: str | None = None
    timezone: str = "UTC"
    catch_up: CatchUp = CatchUp.LATEST
    max_catch_up_runs: int = 100
    max_concurrent: int = 1
    on_overlap: OverlapPolicy = OverlapPolicy.QUEUE
    queue_max: int = 100
    retry_attempts: int = 0
    retry_delay: float = 5.0
    retry_backoff: Backoff = Backoff.CONSTANT
    timeout: float | None = None
    graceful_stop: float = 5.0
    stop_signal: str = "SIGTERM"
    exit_codes: frozenset[int] = frozenset({0})
    notify: tuple[str, ...] | None = None
    """The channels its events may reach; None: every channel; empty: muted."""
    warn_after: float | None = None
    """Seconds after which a still running run causes ``run.long_running``."""
    log_max_size: int = 100 * 1000 * 1000
    log_on_full: LogOnFull = LogOnFull.DROP_OLD
    keep_runs: int | None = None
    keep_for: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    shell: str = "/bin/sh"
    api_trigger: bool = True
    instances: int = 1
    restart_delay: float = 1.0
    restart_backoff: Backoff = Backoff.EXPONENTIAL
    healthy_after: float = 60.0
    start_retries: int = 3
    written: dict[str, str] = field(default_factory=dict)
    """Shown keys (``run``, ``description``, ...) whose value came from ``${VAR}`` or
    ``${file:...}``, as written in the config: what the API shows, so no resolved secret
    leaves the daemon."""

    @property
    def is_service(self) -> bool:
        return self.kind is TaskKind.SERVICE
