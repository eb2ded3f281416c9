"""Reloading the config of a running daemon (``POST /api/reload`` and SIGHUP).

Nothing that runs is stopped, except the instances of a service whose command changed,
which restart one at a time. A broken file changes nothing and is answered with every
problem. Waits are bounded guards, not timings.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.cluster import processes_with, wait_until
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.receiver import Answer, receiver

pytestmark = pytest.mark.slow

BEFORE = """
[tasks.keep]
run = "sleep 2; echo v1"

[tasks.gone]
run = "sleep 2"

[services.web]
instances = 1
run = "sleep 600"

[services.steady]
instances = 1
run = "sleep 600"
"""

AFTER = """
[tasks.keep]
run = "sleep 2; echo v2"

[tasks.fresh]
cron = "* * * * * *"
run = "echo fresh"

[services.web]
instances = 2
run = "sleep 600"

[services.steady]
instances = 1
run = "sleep 601"
"""

BROKEN = """
[tasks.keep]
run = "echo v3"
timout = "1s"

[tasks.other]
cron = "not a schedule"
run = "true"
"""


def runs(daemon: DaemonProcess, task: str) -> list[dict]:  # type: ignore[type-arg]
    with daemon.client() as client:
        return client.get(f"/api/tasks/{task}/runs").json()["runs"]  # type: ignore[no-any-return]


def trigger(daemon: DaemonProcess, task: str) -> str:
    with daemon.client() as client:
        answer = client.post(f"/api/tasks/{task}/run")
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def run(daemon: DaemonProcess, run_id: str) -> dict:  # type: ignore[type-arg]
    with daemon.client() as client:
        return client.get(f"/api/runs/{run_id}").json()  # type: ignore[no-any-return]


def output(daemon: DaemonProcess, task: str, run_id: str) -> list[str]:
    with daemon.client() as client:
        page = client.get(f"/api/tasks/{task}/runs/{run_id}/log").json()
    return [line["text"] for line in page["lines"]]


def instances(daemon: DaemonProcess, service: str) -> list[int]:
    return processes_with([daemon], "RUNWARDEN_TASK", service)


def test_reload_applies_a_new_config_without_stopping_what_runs(
    database_url: str, tmp_path: Path
) -> None:
    with running_daemon(BEFORE, database_url, tmp_path) as daemon:
        wait_until(lambda: instances(daemon, "web") and instances(daemon, "steady"))
        (web_before,) = instances(daemon, "web")
        (steady_before,) = instances(daemon, "steady")
        in_flight = trigger(daemon, "keep")
        gone_running = trigger(daemon, "gone")
        gone_queued = trigger(daemon, "gone")  # max_concurrent = 1: waits in the queue
        wait_until(lambda: run(daemon, gone_running)["status"] == "running")
        (tmp_path / "runwarden.toml").write_text(AFTER)
        with daemon.client() as client:
            answer = client.post("/api/reload")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["added"], body["removed"], body["changed"]) == (
            ["fresh"],
            ["gone"],
            ["keep", "steady", "web"],
        )
        # Removed: no new runs, the running one finishes; the queued one never starts.
        assert run(daemon, gone_queued)["end_reason"] == "skipped"
        ended = wait_until(lambda: (r := run(daemon, gone_running))["status"] == "ended" and r)
        assert ended["end_reason"] == "success"
        assert runs(daemon, "gone")  # its history stays listable
        # Changed: the run in flight keeps its definition, the next one has the new one.
        wait_until(lambda: run(daemon, in_flight)["status"] == "ended")
        assert output(daemon, "keep", in_flight) == ["v1"]
        later = trigger(daemon, "keep")
        wait_until(lambda: run(daemon, later)["status"] == "ended")
        assert output(daemon, "keep", later) == ["v2"]
        # New: scheduled.
        wait_until(lambda: any(r["triggered_by"] == "cron" for r in runs(daemon, "fresh")))
        # Scaled up without touching the running instance; restarted where the command changed.
        wait_until(lambda: len(instances(daemon, "web")) == 2)
        assert web_before in instances(daemon, "web")
        wait_until(lambda: instances(daemon, "steady") not in ([], [steady_before]))
        steady = sorted(runs(daemon, "steady"), key=lambda r: r["created_at"])
        assert [r["end_reason"] for r in steady[:-1]] == ["stopped"]
        with daemon.client() as client:
            nodes = client.get("/api/nodes").json()["nodes"]
            assert client.post("/api/tasks/gone/run").status_code == 404
        assert nodes[0]["config_hash"] == body["config_hash"]


def test_a_broken_file_is_refused_with_every_problem_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    with running_daemon(BEFORE, database_url, tmp_path) as daemon:
        with daemon.client() as client:
            tasks_before = client.get("/api/tasks").json()
        (tmp_path / "runwarden.toml").write_text(BROKEN)
        with daemon.client() as client:
            answer = client.post("/api/reload")
            assert answer.status_code == 422
            assert answer.headers["content-type"].startswith("application/problem+json")
            problem = answer.json()
            assert client.get("/api/tasks").json() == tasks_before
        locations = sorted(e["location"] for e in problem["errors"])
        assert locations == ["config.tasks.keep.timout", "config.tasks.other.cron"]
        assert any('did you mean "timeout"' in e["message"] for e in problem["errors"])
        # SIGHUP with the same file: logged, and the daemon goes on as it was.
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config not reloaded" in daemon.log())
        assert daemon.proc.poll() is None
        with daemon.client() as client:
            assert client.get("/api/tasks").json() == tasks_before


def test_sighup_reloads_the_file(database_url: str, tmp_path: Path) -> None:
    with running_daemon(BEFORE, database_url, tmp_path) as daemon:
        (tmp_path / "runwarden.toml").write_text(BEFORE + '\n[tasks.added]\nrun = "true"\n')
        daemon.proc.send_signal(signal.SIGHUP)

        def names() -> list[str]:
            with daemon.client() as client:
                return [t["name"] for t in client.get("/api/tasks").json()["tasks"]]

        wait_until(lambda: "added" in names())
        assert trigger(daemon, "added")


def test_a_reload_brings_new_notification_channels_into_use(
    database_url: str, tmp_path: Path
) -> None:
    with receiver() as hook, running_daemon(BEFORE, database_url, tmp_path) as daemon:
        url = hook.script("/reloaded", Answer(200))
        (tmp_path / "runwarden.toml").write_text(
            BEFORE + f'\n[notifiers.added]\ntype = "webhook"\nurl = "{url}"\n'
        )
        with daemon.client() as client:
            assert client.post("/api/notifiers/added/test").status_code == 404
            assert client.post("/api/reload").json()["config_hash"]
            sent = client.post("/api/notifiers/added/test", params={"wait": "true"})
        assert sent.status_code == 201, sent.text
        assert sent.json()["status"] == "delivered"
        assert [r.json["type"] for r in hook.at("/reloaded")] == ["notify.test"]
