"""The daemon end to end: real processes, real PostgreSQL, real HTTP."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from adapters.postgres.embedded import run_coroutine
from tests.support.daemon import DaemonProcess, module_daemon, start_daemon, wait_for

CONFIG = """
[defaults]
timeout = "1h"

[tasks.ok]
run = "echo hello; echo oops >&2"

[tasks.exit3]
run = "echo about to fail; exit 3"

[tasks.slow]
run = "sleep 30"
timeout = "1s"
graceful_stop = "1s"

[tasks.sleeper]
run = "sleep 30"

[tasks.bad-dir]
run = "true"
working_dir = "/nonexistent/runwarden-test-dir"

[tasks.every-second]
run = "echo tick"
cron = "* * * * * *"

[tasks.cron-only]
run = "true"
api_trigger = false

[tasks.env-and-dir]
run = "echo $GREETING from $(pwd)"
env = { GREETING = "hi" }
working_dir = "/tmp"
"""


daemon = module_daemon(CONFIG, "daemon")


def trigger(client: httpx.Client, task: str) -> dict[str, Any]:
    response = client.post(f"/api/tasks/{task}/run")
    assert response.status_code == 201, response.text
    return response.json()


def wait_ended(client: httpx.Client, task: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run = client.get(f"/api/tasks/{task}/runs/{run_id}").json()
        return run if run["status"] == "ended" else None

    return wait_for(ended, timeout)  # type: ignore[no-any-return]


def log_lines(database_url: str, run_id: str) -> list[tuple[str, str]]:
    from adapters.postgres.database import create_engine
    from adapters.postgres.logs import PostgresLogStore

    async def read() -> list[tuple[str, str]]:
        engine = create_engine(database_url)
        try:
            lines = await PostgresLogStore(engine).read(run_id, 0, 10_000)
            return [(line.stream.value, line.text) for line in lines]
        finally:
            await engine.dispose()

    return run_coroutine(read)


def test_a_successful_run_is_recorded_with_its_output(
    client: httpx.Client, module_database_url: str
) -> None:
    pending = trigger(client, "ok")
    assert pending["status"] == "pending"
    assert pending["triggered_by"] == "api"
    assert pending["exit_code"] == 0
    assert pending["$schema"].endswith("/schemas/Run.json")
    run = wait_ended(client, "ok", pending["id"])
    assert (run["end_reason"], run["exit_code"]) == ("success", 0)
    assert run["start_at"] >= run["created_at"]
    assert run["end_at"] >= run["start_at"]
    lines = log_lines(module_database_url, run["id"])
    assert ("stdout", "hello") in lines
    assert ("stderr", "oops") in lines


def test_a_failing_command_records_its_exit_code(client: httpx.Client) -> None:
    run = wait_ended(client, "exit3", trigger(client, "exit3")["id"])
    assert (run["end_reason"], run["exit_code"]) == ("failed", 3)


def test_a_run_outliving_its_timeout_is_killed_and_ends_timeout(
    client: httpx.Client, module_database_url: str
) -> None:
    run = wait_ended(client, "slow", trigger(client, "slow")["id"])
    assert (run["end_reason"], run["exit_code"]) == ("timeout", -1)
    started = datetime.fromisoformat(run["start_at"])
    ended = datetime.fromisoformat(run["end_at"])
    assert (ended - started).total_seconds() < 20
    assert any(
        "timeout" in text
        for stream, text in log_lines(module_database_url, run["id"])
        if stream == "system"
    )


def test_stopping_a_running_run_ends_it_stopped(client: httpx.Client) -> None:
    run_id = trigger(client, "sleeper")["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    response = client.post(f"/api/tasks/sleeper/runs/{run_id}/stop")
    assert response.status_code == 200
    assert run_id in response.json()["message"]
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["status"], run["end_reason"], run["exit_code"]) == ("ended", "stopped", -1)
    again = client.post(f"/api/tasks/sleeper/runs/{run_id}/stop")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_stopping_an_unknown_run_is_404(client: httpx.Client) -> None:
    response = client.post("/api/tasks/sleeper/runs/01JNOTAREALRUNID0000000000/stop")
    assert response.status_code == 404


def test_a_command_that_cannot_start_fails_with_exit_minus_one_and_says_why(
    client: httpx.Client, module_database_url: str
) -> None:
    run = wait_ended(client, "bad-dir", trigger(client, "bad-dir")["id"])
    assert (run["end_reason"], run["exit_code"]) == ("failed", -1)
    assert "start_at" not in run
    system = [t for s, t in log_lines(module_database_url, run["id"]) if s == "system"]
    assert any("/nonexistent/runwarden-test-dir" in text for text in system)


def test_env_and_working_dir_reach_the_process(
    client: httpx.Client, module_database_url: str
) -> None:
    run = wait_ended(client, "env-and-dir", trigger(client, "env-and-dir")["id"])
    assert run["end_reason"] == "success"
    assert ("stdout", "hi from /tmp") in log_lines(module_database_url, run["id"])


def test_a_one_second_cron_task_produces_cron_runs_on_whole_seconds(
    client: httpx.Client,
) -> None:
    def enough() -> list[dict[str, Any]] | None:
        runs = client.get("/api/tasks/every-second/runs", params={"status": "success"}).json()
        return runs["runs"] if runs["total"] >= 3 else None

    runs = wait_for(enough, timeout=30)
    assert {r["triggered_by"] for r in runs} == {"cron"}
    ticks = [r["created_at"] for r in runs]
    assert all(t.endswith(".000000Z") for t in ticks)
    assert len(set(ticks)) == len(ticks), "a tick must be recorded once"


def test_unknown_tasks_cannot_be_triggered(client: httpx.Client) -> None:
    response = client.post("/api/tasks/no-such-task/run")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"
    assert "no-such-task" in response.json()["detail"]


def test_tasks_with_api_trigger_off_refuse_api_triggers(client: httpx.Client) -> None:
    response = client.post("/api/tasks/cron-only/run")
    assert response.status_code == 403
    assert "api_trigger" in response.json()["detail"]
    assert client.get("/api/tasks/cron-only/runs").json()["total"] == 0


def test_the_task_list_shows_settings_and_next_run(client: httpx.Client) -> None:
    body = client.get("/api/tasks").json()
    tasks = {t["name"]: t for t in body["tasks"]}
    assert set(tasks) >= {"ok", "exit3", "slow", "every-second", "cron-only"}
    assert tasks["every-second"]["cron"] == "* * * * * *"
    assert tasks["every-second"]["next_run_at"].endswith("Z")
    assert "next_run_at" not in tasks["ok"]
    assert tasks["slow"]["timeout_seconds"] == 1
    one = client.get("/api/tasks/cron-only").json()
    assert one["api_trigger"] is False
    assert client.get("/api/tasks/nope").status_code == 404


def test_health_answers(client: httpx.Client) -> None:
    response = client.get("/health")
    assert (response.status_code, response.text) == (200, "OK")
    assert client.get("/ready").status_code == 200


# --- shutdown and crash: each needs a daemon of its own -------------------------------


SLEEPER_ONLY = '[tasks.sleeper]\nrun = "sleep 60"\ngraceful_stop = "2s"\n'


async def _run_row(url: str, run_id: str) -> asyncpg.Record:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    finally:
        await connection.close()


def _start_sleeper(database_url: str, workdir: Path) -> tuple[DaemonProcess, str]:
    config = workdir / "runwarden.toml"
    config.write_text(SLEEPER_ONLY)
    daemon = start_daemon(config, database_url, workdir)
    with daemon.client() as client:
        run_id = trigger(client, "sleeper")["id"]
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    # The pid is written a moment after the start (PID_RECORD_DELAY).
    wait_for(lambda: run_coroutine(lambda: _run_row(database_url, run_id))["pid"] is not None)
    return daemon, run_id


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group.

    PID 1 here may never reap orphans, so a zombie does not count as alive.
    """
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def test_sigterm_stops_running_processes_and_records_them_stopped(
    database_url: str, tmp_path: Path
) -> None:
    daemon, run_id = _start_sleeper(database_url, tmp_path)
    row = run_coroutine(lambda: _run_row(database_url, run_id))
    assert daemon.terminate() == 0
    after = run_coroutine(lambda: _run_row(database_url, run_id))
    assert (after["status"], after["end_reason"]) == ("ended", "stopped")
    assert not _group_alive(row["pid"]), "the process group must not outlive the daemon"


def test_a_run_left_running_by_a_killed_daemon_is_found_crashed_at_restart(
    database_url: str, tmp_path: Path
) -> None:
    daemon, run_id = _start_sleeper(database_url, tmp_path)
    pgid = run_coroutine(lambda: _run_row(database_url, run_id))["pid"]
    daemon.kill()
    try:
        assert run_coroutine(lambda: _run_row(database_url, run_id))["status"] == "running"
        restarted = start_daemon(tmp_path / "runwarden.toml", database_url, tmp_path)
        try:
            with restarted.client() as client:
                run = client.get(f"/api/runs/{run_id}").json()
            assert (run["status"], run["end_reason"], run["exit_code"]) == ("ended", "crashed", -2)
            # The dead daemon's process was found by its run id and killed.
            wait_for(lambda: not _group_alive(pgid), timeout=10)
        finally:
            restarted.terminate()
    finally:
        # The orphaned `sleep` was started by our daemon; end it by its group id.
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
