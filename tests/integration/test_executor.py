"""The subprocess executor against real processes: exit codes, output capture, signals, trees.

Every process a test starts is killed by pid or process group when the test ends. The
``asyncio.timeout`` guards turn a hang into a failure; they assert no durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from adapters.executor import SubprocessExecutor
from domain.logs import LogStream
from domain.ports import ProcessSpec, ProcessStartError, RunningProcess

GUARD = 20.0  # seconds before a stuck test fails instead of hanging


class CollectingSink:
    """Keeps every chunk (unless told to count only), optionally slowly or failing."""

    def __init__(self, *, keep: bool = True, delay: float = 0.0, fail: bool = False) -> None:
        self.keep = keep
        self.delay = delay
        self.fail = fail
        self.data: dict[LogStream, bytearray] = {s: bytearray() for s in LogStream}
        self.total = 0
        self.largest_chunk = 0
        self._arrived = asyncio.Event()

    async def write(self, stream: LogStream, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("sink broken")
        if self.delay:
            await asyncio.sleep(self.delay)
        self.total += len(data)
        self.largest_chunk = max(self.largest_chunk, len(data))
        if self.keep:
            self.data[stream] += data
        self._arrived.set()

    def out(self) -> bytes:
        return bytes(self.data[LogStream.STDOUT])

    def err(self) -> bytes:
        return bytes(self.data[LogStream.STDERR])

    async def wait_for(self, marker: bytes) -> None:
        """Wait until stdout contains ``marker`` (the process says it is ready)."""
        async with asyncio.timeout(GUARD):
            while marker not in self.data[LogStream.STDOUT]:
                self._arrived.clear()
                await self._arrived.wait()


class Runner:
    """Starts processes and remembers them so the test can clean up whatever it started."""

    def __init__(self) -> None:
        self.started: list[RunningProcess] = []
        self.strays: list[psutil.Process] = []

    async def start(
        self, command: str, *, sink: CollectingSink | None = None, executor: Any = None, **kw: Any
    ) -> tuple[RunningProcess, CollectingSink]:
        sink = sink or CollectingSink()
        proc = await (executor or SubprocessExecutor()).start(ProcessSpec(command, **kw), sink)
        self.started.append(proc)
        return proc, sink

    async def run(self, command: str, **kw: Any) -> tuple[int, CollectingSink]:
        proc, sink = await self.start(command, **kw)
        async with asyncio.timeout(GUARD):
            return await proc.wait(), sink

    def adopt(self, pid: int) -> None:
        """Kill ``pid`` at the end too (a process that may have left our group)."""
        self.strays.append(psutil.Process(pid))


@pytest.fixture
async def runner() -> AsyncIterator[Runner]:
    r = Runner()
    yield r
    for proc in r.started:
        await proc.terminate("SIGKILL", 0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(GUARD):
                await proc.wait()
    for stray in r.strays:
        with contextlib.suppress(psutil.Error):
            stray.kill()  # psutil refuses if the pid now belongs to another process


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that still run (zombies excluded: PID 1 may not reap)."""
    members = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                members.append(p.pid)
    return members


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def real_path(path: Path) -> str:
    return os.path.realpath(path)


def child_pid(sink: CollectingSink) -> int:
    return int(sink.out().split(b"child=")[1].split()[0])


async def test_a_successful_command_exits_0_with_stdout_and_stderr_kept_apart(
    runner: Runner,
) -> None:
    code, sink = await runner.run("echo out; echo err >&2")
    assert (code, sink.out(), sink.err()) == (0, b"out\n", b"err\n")


async def test_the_shell_exit_status_is_returned(runner: Runner) -> None:
    code, _ = await runner.run("exit 3")
    assert code == 3


async def test_an_unknown_command_is_a_normal_failure_with_status_127(runner: Runner) -> None:
    code, sink = await runner.run("nonexistent-cmd-runwarden")
    assert code == 127
    assert b"nonexistent-cmd-runwarden" in sink.err()


async def test_a_process_killed_by_a_signal_reports_minus_1(runner: Runner) -> None:
    code, _ = await runner.run("kill -KILL $$")
    assert code == -1


async def test_a_process_trapping_the_stop_signal_reports_its_own_status(runner: Runner) -> None:
    proc, sink = await runner.start("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done")
    await sink.wait_for(b"ready")
    await proc.terminate("SIGTERM", 10)
    async with asyncio.timeout(GUARD):
        assert await proc.wait() == 7


async def test_terminate_kills_the_whole_process_tree(runner: Runner) -> None:
    proc, sink = await runner.start("sleep 100 & sleep 100 & echo ready; wait")
    await sink.wait_for(b"ready")
    assert len(live_group_members(proc.pid)) == 3
    # A child still between fork and exec loses the SIGTERM; the grace then runs out.
    await proc.terminate("SIGTERM", 1)
    async with asyncio.timeout(GUARD):
        assert await proc.wait() == -1
    assert live_group_members(proc.pid) == []


async def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace_period(
    runner: Runner,
) -> None:
    # The shell dies of SIGTERM at once; its child ignores it and must not outlive terminate.
    proc, sink = await runner.start("sh -c 'trap \"\" TERM; echo child=$$; exec sleep 100' & wait")
    await sink.wait_for(b"child=")
    child = child_pid(sink)
    runner.adopt(child)
    await proc.terminate("SIGTERM", 0.5)
    assert not is_running(child)
    assert live_group_members(proc.pid) == []


async def test_a_child_handling_the_stop_signal_gets_the_grace_period_after_the_shell_exits(
    runner: Runner,
) -> None:
    child = "trap 'sleep 0.3; echo cleaned; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    proc, sink = await runner.start(f'sh -c "{child}" & wait')
    await sink.wait_for(b"ready")
    await proc.terminate("SIGTERM", 10)
    async with asyncio.timeout(GUARD):
        await proc.wait()
    assert b"cleaned" in sink.out()


async def test_a_child_that_escaped_with_setsid_is_killed_by_terminate(runner: Runner) -> None:
    proc, sink = await runner.start("setsid sh -c 'echo child=$$; exec sleep 100' & wait")
    await sink.wait_for(b"child=")
    child = child_pid(sink)
    runner.adopt(child)
    assert os.getpgid(child) != proc.pid  # it really left the group
    await proc.terminate("SIGTERM", 10)
    async with asyncio.timeout(GUARD):
        await proc.wait()
    assert not is_running(child)


async def test_terminate_is_safe_to_repeat_and_after_the_exit(runner: Runner) -> None:
    proc, _ = await runner.start("true")
    async with asyncio.timeout(GUARD):
        assert await proc.wait() == 0
    await proc.terminate("SIGTERM", 1)
    await proc.terminate("TERM", 1)


async def test_an_unknown_stop_signal_name_is_refused(runner: Runner) -> None:
    proc, _ = await runner.start("true")
    with pytest.raises(ValueError, match="SIGNOPE"):
        await proc.terminate("SIGNOPE", 1)


async def test_a_missing_working_directory_is_a_start_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    message = f"cannot start: working directory {missing} does not exist"
    with pytest.raises(ProcessStartError, match=re.escape(message)):
        await SubprocessExecutor().start(ProcessSpec("true", working_dir=missing), CollectingSink())


async def test_a_missing_shell_is_a_start_error() -> None:
    spec = ProcessSpec("true", shell="/no/such/shell")
    with pytest.raises(ProcessStartError, match="shell /no/such/shell does not exist"):
        await SubprocessExecutor().start(spec, CollectingSink())


async def test_the_daemons_environment_is_inherited(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWARDEN_TEST_INHERITED", "yes")
    _, sink = await runner.run('echo "$RUNWARDEN_TEST_INHERITED"')
    assert sink.out() == b"yes\n"


async def test_the_specs_env_is_laid_over_the_base_environment(runner: Runner) -> None:
    executor = SubprocessExecutor(base_env={"A": "base", "B": "base", "PATH": os.defpath})
    _, sink = await runner.run('echo "$A $B"', executor=executor, env={"B": "spec"})
    assert sink.out() == b"base spec\n"


async def test_the_working_directory_is_honoured(runner: Runner, tmp_path: Path) -> None:
    _, sink = await runner.run("pwd -P", working_dir=str(tmp_path))
    assert sink.out() == real_path(tmp_path).encode() + b"\n"


async def test_50_mb_through_a_slow_sink_arrive_whole_in_chunks_of_at_most_64_kib(
    runner: Runner,
) -> None:
    size = 50 * 1024 * 1024
    sink = CollectingSink(keep=False, delay=0.0002)
    code, _ = await runner.run(f"head -c {size} /dev/zero", sink=sink)
    assert (code, sink.total) == (0, size)
    assert sink.largest_chunk <= 64 * 1024


async def test_binary_output_arrives_byte_for_byte(runner: Runner) -> None:
    _, sink = await runner.run(r"printf '\377\000\376abc\n'")
    assert sink.out() == b"\xff\x00\xfeabc\n"


async def test_a_background_grandchild_holding_stdout_does_not_hold_up_wait(
    runner: Runner,
) -> None:
    executor = SubprocessExecutor(drain_timeout=0.2)
    code, sink = await runner.run("sleep 100 & echo done", executor=executor)
    assert (code, sink.out()) == (0, b"done\n")


async def test_a_chatty_background_grandchild_does_not_hold_up_wait_past_the_drain_limit(
    runner: Runner,
) -> None:
    executor = SubprocessExecutor(drain_timeout=60, drain_limit=0.3)
    command = "(while :; do echo x; sleep 0.01; done) & echo done"
    code, sink = await runner.run(command, executor=executor)
    assert code == 0
    # The grandchild may print before or after the shell: only completeness matters here.
    assert b"done" in sink.out().split(b"\n")


async def test_a_failing_sink_never_blocks_the_process_and_its_error_is_raised_by_wait(
    runner: Runner,
) -> None:
    proc, _ = await runner.start("head -c 1000000 /dev/zero", sink=CollectingSink(fail=True))
    with pytest.raises(RuntimeError, match="sink broken"):
        async with asyncio.timeout(GUARD):
            await proc.wait()


def test_many_short_processes_under_uvloop_each_capture_their_own_output() -> None:
    """The server runs on uvloop, which refuses a descriptor number still registered to a
    transport: pipes and pidfds of processes started back to back reuse numbers."""
    uvloop = pytest.importorskip("uvloop")

    async def one(k: int) -> tuple[int, bytes]:
        sink = CollectingSink()
        proc = await SubprocessExecutor().start(ProcessSpec(f"echo {k}"), sink)
        async with asyncio.timeout(GUARD):
            return await proc.wait(), sink.out()

    async def many() -> list[tuple[int, bytes]]:
        limit = asyncio.Semaphore(16)

        async def limited(k: int) -> tuple[int, bytes]:
            async with limit:
                return await one(k)

        return await asyncio.gather(*(limited(k) for k in range(200)))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        results = run.run(many())
    assert results == [(0, f"{k}\n".encode()) for k in range(200)]
