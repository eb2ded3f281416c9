"""Overlap policies, retries, catch-up and recovery, end to end through a real daemon."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonProcess, running_daemon, start_daemon, wait_for

CONFIG = """
[tasks.pair]
run = "sleep 1"
max_concurrent = 2
on_overlap = "queue"

[tasks.only-one]
run = "sleep 30"
on_overlap = "skip"

[tasks.newest-wins]
run = "sleep 30"
on_overlap = "terminate"
graceful_stop = "1s"

[tasks.short-queue]
run = "sleep 30"
queue_max = 1

[tasks.retry-constant]
run = "exit 1"
retry_attempts = 2
retry_delay = "300ms"
retry_backoff = "constant"

[tasks.retry-linear]
run = "exit 1"
retry_attempts = 3
retry_delay = "300ms"
retry_backoff = "linear"

[tasks.retry-exponential]
run = "exit 1"
retry_attempts = 3
retry_delay = "300ms"
retry_backoff = "exponential"

[tasks.retry-timeout]
run = "sleep 10"
timeout = "300ms"
graceful_stop = "200ms"
retry_attempts = 1
retry_delay = "100ms"

[tasks.retry-then-succeed]
run = "test -e $MARKER || { touch $MARKER; exit 4; }"
env = { MARKER = "{marker}" }
retry_attempts = 3
retry_delay = "100ms"

[tasks.chatty]
run = "yes 'a line of output that never ends'"
log_max_size = "100kb"
log_on_full = "kill_task"
graceful_stop = "1s"

[tasks.no-retry-on-stop]
run = "sleep 30"
retry_attempts = 3
retry_delay = "100ms"
"""


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("semantics")
    config = CONFIG.replace("{marker}", str(workdir / "marker"))
    with running_daemon(config, module_database_url, workdir) as d:
        yield d


def runs_of(client: httpx.Client, task: str, **params: Any) -> list[dict[str, Any]]:
    body = client.get(f"/api/tasks/{task}/runs", params={"limit": 1000, **params}).json()
    return body["runs"]  # type: ignore[no-any-return]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_twenty_concurrent_triggers_never_run_more_than_max_concurrent(
    client: httpx.Client, daemon: DaemonProcess
) -> None:
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(
                lambda _: httpx.post(
                    f"{daemon.url}/api/tasks/pair/run", headers=daemon.headers, timeout=30
                ),
                range(20),
            )
        )
    assert [r.status_code for r in responses] == [201] * 20
    ids = {r.json()["id"] for r in responses}
    peak = 0

    def all_ended() -> bool:
        nonlocal peak
        runs = runs_of(client, "pair")
        peak = max(peak, sum(1 for r in runs if r["status"] == "running"))
        return len(runs) == 20 and all(r["status"] == "ended" for r in runs)

    wait_for(all_ended, timeout=60, interval=0.05)
    runs = runs_of(client, "pair")
    assert {r["id"] for r in runs} == ids
    assert {r["end_reason"] for r in runs} == {"success"}
    assert 1 <= peak <= 2
    # Replaying the recorded intervals: at no instant were three runs alive at once.
    events = sorted(
        [(ts(r["start_at"]), 1) for r in runs] + [(ts(r["end_at"]), -1) for r in runs],
        key=lambda e: (e[0], e[1]),
    )
    alive = most = 0
    for _, delta in events:
        alive += delta
        most = max(most, alive)
    assert most <= 2


def test_skip_policy_records_a_skipped_run_and_answers_409(client: httpx.Client) -> None:
    first = client.post("/api/tasks/only-one/run")
    assert first.status_code == 201
    second = client.post("/api/tasks/only-one/run")
    assert second.status_code == 409
    problem = second.json()
    assert problem["title"] == "Conflict"
    skipped = client.get(f"/api/runs/{problem['run_id']}").json()
    assert (skipped["status"], skipped["end_reason"], skipped["exit_code"]) == (
        "ended",
        "skipped",
        -1,
    )
    assert "start_at" not in skipped
    client.post(f"/api/tasks/only-one/runs/{first.json()['id']}/stop")


def test_terminate_policy_stops_the_running_run_and_starts_the_new_one(
    client: httpx.Client,
) -> None:
    old = client.post("/api/tasks/newest-wins/run").json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{old}").json()["status"] == "running")
    new = client.post("/api/tasks/newest-wins/run")
    assert new.status_code == 201
    new_id = new.json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{new_id}").json()["status"] == "running")
    replaced = client.get(f"/api/runs/{old}").json()
    assert (replaced["end_reason"], replaced["exit_code"]) == ("stopped", -1)
    client.post(f"/api/tasks/newest-wins/runs/{new_id}/stop")


def test_a_full_queue_turns_triggers_away_as_skipped(client: httpx.Client) -> None:
    running = client.post("/api/tasks/short-queue/run").json()["id"]
    queued = client.post("/api/tasks/short-queue/run")
    overflow = client.post("/api/tasks/short-queue/run")
    assert queued.status_code == 201
    assert queued.json()["status"] == "pending"
    assert overflow.status_code == 409
    for run_id in (queued.json()["id"], running):
        client.post(f"/api/tasks/short-queue/runs/{run_id}/stop")
    statuses = {r["id"]: r.get("end_reason") for r in runs_of(client, "short-queue")}
    assert statuses[queued.json()["id"]] == "stopped"
    assert statuses[overflow.json()["run_id"]] == "skipped"


def chain(client: httpx.Client, task: str, attempts: int) -> list[dict[str, Any]]:
    first = client.post(f"/api/tasks/{task}/run").json()["id"]

    def complete() -> list[dict[str, Any]] | None:
        runs = [r for r in runs_of(client, task) if r["status"] == "ended"]
        return runs if len(runs) == attempts else None

    runs = wait_for(complete, timeout=30)
    time.sleep(0.5)  # no further attempt may appear
    assert len(runs_of(client, task)) == attempts
    by_attempt = sorted(runs, key=lambda r: r["retry_attempt"])
    assert by_attempt[0]["id"] == first
    return by_attempt  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("task", "delays"),
    [
        ("retry-constant", [0.3, 0.3]),
        ("retry-linear", [0.3, 0.6, 0.9]),
        ("retry-exponential", [0.3, 0.6, 1.2]),
    ],
)
def test_failed_runs_are_retried_with_backoff(
    client: httpx.Client, task: str, delays: list[float]
) -> None:
    runs = chain(client, task, len(delays) + 1)
    assert [r["retry_attempt"] for r in runs] == list(range(len(delays) + 1))
    assert {r["end_reason"] for r in runs} == {"failed"}
    assert {r["triggered_by"] for r in runs} == {"api"}
    for previous, retry, delay in zip(runs[:-1], runs[1:], delays, strict=True):
        assert retry["retry_of_run_id"] == previous["id"]
        waited = ts(retry["start_at"]) - ts(previous["end_at"])
        assert waited >= timedelta(seconds=delay) - timedelta(milliseconds=5)
    assert "retry_of_run_id" not in runs[0]


def test_a_timed_out_run_is_retried(client: httpx.Client) -> None:
    runs = chain(client, "retry-timeout", 2)
    assert [r["end_reason"] for r in runs] == ["timeout", "timeout"]


def test_retries_stop_at_the_first_success(client: httpx.Client) -> None:
    runs = chain(client, "retry-then-succeed", 2)
    assert [(r["end_reason"], r["exit_code"]) for r in runs] == [("failed", 4), ("success", 0)]


def test_a_stopped_run_is_not_retried(client: httpx.Client) -> None:
    run_id = client.post("/api/tasks/no-retry-on-stop/run").json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    client.post(f"/api/tasks/no-retry-on-stop/runs/{run_id}/stop")
    time.sleep(0.5)
    assert [r["id"] for r in runs_of(client, "no-retry-on-stop")] == [run_id]


def test_output_beyond_the_budget_under_kill_task_ends_the_run_log_overflow(
    client: httpx.Client,
) -> None:
    run_id = client.post("/api/tasks/chatty/run").json()["id"]
    run = wait_for(
        lambda: (r := client.get(f"/api/runs/{run_id}").json())["status"] == "ended" and r
    )
    assert (run["end_reason"], run["exit_code"]) == ("log_overflow", -1)


RETRY_LATER = """
[tasks.retry-later]
run = "exit 2"
retry_attempts = 1
retry_delay = "4s"
"""


def test_a_pending_retry_survives_a_daemon_restart(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(RETRY_LATER)
    first = start_daemon(config, database_url, tmp_path)
    with first.client() as client:
        original = client.post("/api/tasks/retry-later/run").json()["id"]
        pending = wait_for(
            lambda: [
                r
                for r in runs_of(client, "retry-later", status="pending")
                if r["retry_attempt"] == 1
            ]
        )
    assert first.terminate() == 0
    second = start_daemon(config, database_url, tmp_path)
    try:
        with second.client() as client:
            retry_id = pending[0]["id"]
            retry = wait_for(
                lambda: (
                    (r := client.get(f"/api/runs/{retry_id}").json())["status"] == "ended" and r
                ),
                timeout=30,
            )
            failed = client.get(f"/api/runs/{original}").json()
    finally:
        second.terminate()
    assert (retry["retry_attempt"], retry["retry_of_run_id"]) == (1, original)
    assert retry["end_reason"] == "failed"
    assert ts(retry["start_at"]) - ts(failed["end_at"]) >= timedelta(seconds=4)


# --- catch-up across a restart ------------------------------------------------------------

# Ten-minute ticks: no tick falls due on its own during the test, so every run is a catch-up.
CATCH_UP = """
[tasks.latest]
run = "true"
cron = "@every 600s"
catch_up = "latest"

[tasks.all]
run = "true"
cron = "@every 600s"
catch_up = "all"
max_catch_up_runs = 4

[tasks.skip]
run = "true"
cron = "@every 600s"
catch_up = "skip"
"""

NEW_TASK = """
[tasks.brand-new]
run = "true"
cron = "@every 600s"
catch_up = "all"
"""


def cron_ticks(client: httpx.Client, task: str) -> list[datetime]:
    return sorted(ts(r["created_at"]) for r in runs_of(client, task) if r["triggered_by"] == "cron")


async def _rewind_ticks(url: str, hours: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            f"UPDATE task_ticks SET last_tick = last_tick - interval '{hours} hours'"
        )
    finally:
        await connection.close()


def test_ticks_missed_while_the_daemon_was_down_are_caught_up_per_policy(
    database_url: str, tmp_path: Path
) -> None:
    from adapters.postgres.embedded import run_coroutine

    config = tmp_path / "runwarden.toml"
    config.write_text(CATCH_UP)
    start_daemon(config, database_url, tmp_path).terminate()
    # As if the daemon had been down for the last hour: six ten-minute ticks were missed.
    run_coroutine(lambda: _rewind_ticks(database_url, 1))
    config.write_text(CATCH_UP + NEW_TASK)
    before_restart = datetime.now().astimezone()
    second = start_daemon(config, database_url, tmp_path)
    try:
        with second.client() as client:
            for task in ("latest", "all", "skip", "brand-new"):
                wait_for(
                    lambda t=task: all(  # type: ignore[misc]
                        r["status"] == "ended" for r in runs_of(client, t)
                    )
                )
            # A tick that happens to fall due just as the daemon starts is on time, not missed.
            missed_before = before_restart - timedelta(seconds=6)
            missed = {
                task: [t for t in cron_ticks(client, task) if t < missed_before]
                for task in ("latest", "all", "skip", "brand-new")
            }
    finally:
        second.terminate()
    assert len(missed["latest"]) == 1
    assert len(missed["all"]) == 4, "all: the newest max_catch_up_runs missed ticks"
    assert missed["latest"][0] == missed["all"][-1]
    assert missed["skip"] == []
    assert missed["brand-new"] == [], "a task seen for the first time never catches up"
    for tick in missed["all"]:
        assert tick.timestamp() % 600 == 0


# --- recovery after a hard kill -----------------------------------------------------------

RECOVERY = """
[tasks.retried-after-crash]
run = "sleep 60"
retry_attempts = 1
retry_delay = "100ms"
"""


def test_a_crashed_run_is_retried_after_restart(database_url: str, tmp_path: Path) -> None:
    import os
    import signal

    config = tmp_path / "runwarden.toml"
    config.write_text(RECOVERY)
    first = start_daemon(config, database_url, tmp_path)
    with first.client() as client:
        run_id = client.post("/api/tasks/retried-after-crash/run").json()["id"]
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    first.kill()
    second = start_daemon(config, database_url, tmp_path)
    try:
        with second.client() as client:
            crashed = client.get(f"/api/runs/{run_id}").json()
            assert (crashed["end_reason"], crashed["exit_code"]) == ("crashed", -2)

            def retry() -> dict[str, Any] | None:
                runs = runs_of(client, "retried-after-crash", status="running")
                return runs[0] if runs else None

            again = wait_for(retry)
            assert (again["retry_attempt"], again["retry_of_run_id"]) == (1, run_id)
            client.post(f"/api/tasks/retried-after-crash/runs/{again['id']}/stop")
    finally:
        second.terminate()
        # The first daemon's orphan is ours to clean up: it is the crashed run's group.
        from adapters.postgres.embedded import run_coroutine
        from tests.integration.test_daemon_runs import _group_alive, _run_row

        pgid = run_coroutine(lambda: _run_row(database_url, run_id))["pid"]
        if pgid and _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
