"""The domain's ports: what it needs from the world, as Protocols with their contracts.

Adapters subclass these explicitly (``class PostgresRunRepository(RunRepository)``) so the
type checker proves they conform. One contract suite in ``tests/contract`` runs against
the in-memory fakes and the Postgres adapters alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from domain.listing import RunPage, RunQuery
from domain.logs import LogLine, LogStream
from domain.run import Run, RunStatus


class Clock(Protocol):
    """The only source of time."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for measuring intervals."""
        ...


class RunRepository(Protocol):
    """Where runs are recorded. Every method is one transaction.

    Contract:
    - ``add`` inserts a new run; ids are unique.
    - ``add_cron_run`` inserts a cron run unless a first attempt (``retry_attempt`` 0) of the
      same task at the same ``created_at`` tick exists; it returns False then, so a tick is
      recorded once however many loops see it.
    - ``replace`` is compare-and-set: it stores ``new`` only if the stored run still has
      ``expected`` status, and says whether it did. Two racing enders cannot both win.
    - ``get`` returns None for an unknown id.
    - ``list`` filters, orders and windows exactly as ``domain.listing.apply_query`` does,
      with ``total`` counting every match regardless of ``limit``/``offset``.
    - ``active`` returns the runs in ``pending`` or ``running``, oldest first.
    - ``delete`` removes an ended run and says whether one was removed.
    """

    async def add(self, run: Run) -> None: ...

    async def add_cron_run(self, run: Run) -> bool: ...

    async def replace(self, new: Run, expected: RunStatus) -> bool: ...

    async def get(self, run_id: str) -> Run | None: ...

    async def active(self, task_name: str | None = None) -> list[Run]: ...

    async def delete(self, run_id: str) -> bool: ...

    # Last, so that its name does not shadow the builtin in the annotations above.
    async def list(self, query: RunQuery) -> RunPage: ...


class LogStore(Protocol):
    """Where run output lines are kept.

    Contract:
    - ``append`` stores lines of one run; their ``n`` are consecutive and continue the
      run's previous append. Appends of one run are never concurrent.
    - ``read`` returns up to ``limit`` stored lines with ``n >= first``, in order.
    - ``stats`` returns (first available n, total lines ever appended); (0, 0) when none.
    - ``delete`` removes every line of the run.
    """

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> None: ...

    async def read(self, run_id: str, first: int, limit: int) -> list[LogLine]: ...

    async def stats(self, run_id: str) -> tuple[int, int]: ...

    async def delete(self, run_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to start one run's process: ``shell -c command`` in its own process group."""

    command: str
    shell: str = "/bin/sh"
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None


class OutputSink(Protocol):
    """Receives a process's output as raw chunks, in order per stream."""

    async def write(self, stream: LogStream, data: bytes) -> None:
        """Take one chunk. May await to apply backpressure to the process."""
        ...


class RunningProcess(Protocol):
    """A started process group."""

    @property
    def pid(self) -> int:
        """The shell's pid, which is also the process group id."""
        ...

    async def wait(self) -> int:
        """Wait for exit and for both pipes to be drained into the sink.

        Returns the exit status, or -1 if a signal killed the process.
        """
        ...

    async def terminate(self, stop_signal: str, grace: float) -> None:
        """Send ``stop_signal`` to the whole group, then SIGKILL after ``grace`` seconds.

        Returns once the group's leader has exited. Safe to call more than once.
        """
        ...


class ProcessStartError(Exception):
    """The process could not be started; the message says why (for a system log line)."""


class Executor(Protocol):
    """Starts processes."""

    async def start(self, spec: ProcessSpec, sink: OutputSink) -> RunningProcess:
        """Start ``spec`` and feed its output to ``sink``.

        Raises :class:`ProcessStartError` if the shell or working directory is unusable.
        """
        ...
