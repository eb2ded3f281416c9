"""Output limits with real processes and PostgreSQL: the log budget, huge and binary output,
and the capture's peak memory.

The ``asyncio.timeout`` guards turn a hang into a failure; they assert no durations.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SystemClock
from adapters.executor import SubprocessExecutor
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.runs import PostgresRunRepository
from app.runtime.output import RunOutput
from domain.logs import MAX_LINE_BYTES, LogLine, LogStream
from domain.ports import ProcessSpec, RunningProcess
from domain.run import Run, TriggeredBy
from domain.services import new_run_id
from domain.tasks import LogOnFull, TaskSpec
from tests.support.memory import run_capture

GUARD = 120.0
MB = 1_000_000
LINE = "some typical log line of about sixty bytes .............."  # 57 bytes
FIFTY_MB_OF_LINES = f"yes '{LINE}' | head -c {50 * MB}"
CHUNK_LINES = len(LINE) + 1


@dataclass
class Captured:
    exit_code: int
    output: RunOutput
    lines: list[LogLine]
    first_available: int
    total_lines: int
    overflow_calls: int

    def texts(self, stream: LogStream = LogStream.STDOUT) -> list[str]:
        return [line.text for line in self.lines if line.stream is stream]

    def stored_bytes(self) -> int:
        return sum(len(line.text.encode()) for line in self.lines)


async def capture(engine: AsyncEngine, command: str, task: TaskSpec | None = None) -> Captured:
    """Run ``command`` as the dispatcher would, stopping it when ``kill_task`` overflows."""
    clock = SystemClock()
    task = task or TaskSpec(name="output", run=command)
    run = Run(new_run_id(clock.now()), task.name, clock.now(), TriggeredBy.API)
    await PostgresRunRepository(engine).add(run)
    store = PostgresLogStore(engine)
    started: list[RunningProcess] = []
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        stopping.append(asyncio.get_running_loop().create_task(started[0].terminate("TERM", 5)))

    output = RunOutput(run.id, store, clock, task, stop)
    async with asyncio.timeout(GUARD):
        process = await SubprocessExecutor().start(ProcessSpec(command), output)
        started.append(process)
        output.open()
        try:
            code = await process.wait()
        finally:
            await process.terminate("KILL", 0)  # nothing outlives the test
            await asyncio.gather(*stopping)
            await output.close()
    first, total = await store.stats(run.id)
    lines = await store.read(run.id, first, total + 1)
    return Captured(code, output, lines, first, total, len(stopping))


def limited(policy: LogOnFull, size: int = MB) -> TaskSpec:
    return TaskSpec(name="output", run="", log_max_size=size, log_on_full=policy)


@pytest.mark.slow
async def test_drop_new_stores_the_first_megabyte_and_lets_the_process_finish(
    engine: AsyncEngine,
) -> None:
    result = await capture(engine, FIFTY_MB_OF_LINES, limited(LogOnFull.DROP_NEW))
    assert result.exit_code == 0
    kept = result.texts()
    assert len(kept) == MB // len(LINE)
    assert set(kept) == {LINE}
    assert result.texts(LogStream.SYSTEM) == [
        "runwarden: output truncated at 1.0 MB (log_max_size); further output discarded"
    ]
    assert result.lines[-1].stream is LogStream.SYSTEM
    assert [line.n for line in result.lines] == list(range(len(kept) + 1))
    every_line = 50 * MB // CHUNK_LINES + 1  # the last one is cut short by head
    assert result.output.dropped_lines == every_line - len(kept)
    assert result.output.lost_lines == 0


@pytest.mark.slow
async def test_drop_old_stores_the_last_megabyte_with_absolute_numbers(
    engine: AsyncEngine,
) -> None:
    result = await capture(engine, FIFTY_MB_OF_LINES, limited(LogOnFull.DROP_OLD))
    assert result.exit_code == 0
    every_line = 50 * MB // CHUNK_LINES + 1
    assert result.total_lines == every_line + 1, "every output line and one notice"
    assert [line.n for line in result.lines] == list(range(result.first_available, every_line + 1))
    assert 0.75 * MB < result.stored_bytes() <= MB
    assert result.texts()[-1] == LINE[: 50 * MB % CHUNK_LINES], "the tail is kept"
    assert result.output.lost_lines == 0


@pytest.mark.slow
async def test_kill_task_stops_the_process_once_its_output_exceeds_the_budget(
    engine: AsyncEngine,
) -> None:
    endless = f"yes '{LINE}'"
    result = await capture(engine, endless, limited(LogOnFull.KILL_TASK))
    assert result.output.overflowed
    assert result.overflow_calls == 1
    assert result.exit_code == -1, "ended by the signal"
    assert len(result.texts()) == MB // len(LINE)
    assert result.texts(LogStream.SYSTEM) == [
        "runwarden: output exceeded 1.0 MB (log_max_size); stopping the task"
    ]


@pytest.mark.slow
async def test_a_fifty_megabyte_line_without_newline_is_stored_in_pieces(
    engine: AsyncEngine,
) -> None:
    result = await capture(engine, f"head -c {50 * MB} /dev/zero | tr '\\0' a")
    assert result.exit_code == 0
    assert result.first_available == 0
    assert result.stored_bytes() == 50 * MB
    assert max(len(text) for text in result.texts()) == MAX_LINE_BYTES
    assert all(set(text) == {"a"} for text in result.texts())


async def test_binary_output_is_stored_with_invalid_bytes_replaced(engine: AsyncEngine) -> None:
    result = await capture(engine, "head -c 1000000 /dev/urandom")
    assert result.exit_code == 0
    assert result.output.lost_lines == 0
    assert result.total_lines == len(result.lines) > 0
    assert any("\ufffd" in text for text in result.texts())
    assert not any("\x00" in text for text in result.texts())


@pytest.mark.slow
def test_capturing_a_gigabyte_keeps_the_capture_process_small(database_url: str) -> None:
    # Long lines keep this under a minute: 60-byte lines are captured at ~7 MB/s (the line
    # splitting is pure Python). Memory per line is bounded by the batch size either way.
    command = f"yes '{'x' * 999}' | head -c {1000 * MB}"
    report, peak = run_capture(database_url, 10 * MB, command, timeout=300)
    assert report["exit_code"] == 0
    assert report["total_lines"] == 1000 * MB // 1000 + 1
    assert report["lost_lines"] == 0
    # Measured: about 70 MB, most of it the interpreter and its libraries.
    assert peak < 150 * MB, f"peak RSS {peak / MB:.0f} MB"
