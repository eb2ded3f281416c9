"""Peak memory of a process we started, and a capture harness to measure it on.

``python -m tests.support.memory URL LOG_MAX_SIZE COMMAND`` captures ``COMMAND`` the way
the daemon does (the real executor, ``RunOutput`` under ``drop_old``, PostgreSQL) into a
new run, and prints one JSON object with what it stored. Running it as a child process
lets a test sample its resident memory while it works.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from dataclasses import dataclass

import psutil


@dataclass
class PeakRss:
    """Samples a process's resident set size every ``interval`` seconds, in a thread."""

    pid: int
    interval: float = 0.1
    peak: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        process = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)


def run_capture(url: str, log_max_size: int, command: str, timeout: float) -> tuple[dict, int]:  # type: ignore[type-arg]
    """Run the capture harness as a child; return its report and its peak RSS in bytes."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.memory", url, str(log_max_size), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with PeakRss(child.pid) as peak:
            out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise AssertionError(f"capture failed ({child.returncode}):\n{err.decode()}")
    return json.loads(out), peak.peak


async def _capture(url: str, log_max_size: int, command: str) -> dict:  # type: ignore[type-arg]
    from adapters.clock import SystemClock
    from adapters.executor import SubprocessExecutor
    from adapters.postgres.database import create_engine
    from adapters.postgres.logs import PostgresLogStore
    from adapters.postgres.runs import PostgresRunRepository
    from app.runtime.output import RunOutput
    from domain.ports import ProcessSpec
    from domain.run import Run, TriggeredBy
    from domain.services import new_run_id
    from domain.tasks import LogOnFull, TaskSpec

    clock = SystemClock()
    engine = create_engine(url)
    try:
        task = TaskSpec(
            name="big", run=command, log_max_size=log_max_size, log_on_full=LogOnFull.DROP_OLD
        )
        run = Run(new_run_id(clock.now()), task.name, clock.now(), TriggeredBy.API)
        await PostgresRunRepository(engine).add(run)
        store = PostgresLogStore(engine)
        output = RunOutput(run.id, store, clock, task)
        started = clock.monotonic()
        process = await SubprocessExecutor().start(ProcessSpec(command), output)
        output.open()
        code = await process.wait()
        await output.close()
        first, total = await store.stats(run.id)
        return {
            "exit_code": code,
            "seconds": clock.monotonic() - started,
            "first_available": first,
            "total_lines": total,
            "lost_lines": output.lost_lines,
        }
    finally:
        await engine.dispose()


if __name__ == "__main__":
    report = asyncio.run(_capture(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    print(json.dumps(report))
