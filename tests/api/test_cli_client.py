"""``runwarden tasks | runs | run | trigger | logs | stop | nodes | notify`` against a real
daemon: what they print, ``--json`` that parses, exit codes, and the errors people get."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import runwarden
from tests.support.daemon import (
    DaemonProcess,
    free_port,
    module_daemon,
    running_daemon,
    start_daemon,
    wait_for,
)

ROOT = Path(__file__).parents[2]
CONFIG = """
[tasks.hello]
description = "say hello"
run = "echo hello; echo oops >&2"

[tasks.fails]
run = "echo about to fail; exit 7"

[tasks.slow]
run = "sleep 300"
"""

daemon = module_daemon(CONFIG, "cli")


def cli(
    daemon: DaemonProcess | None, *args: str, token: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``runwarden ARGS`` with the daemon's URL and token in the environment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNWARDEN_")}
    if daemon is not None:
        env["RUNWARDEN_URL"] = url or daemon.url
        env["RUNWARDEN_TOKEN"] = token if token is not None else (daemon.token or "")
    return runwarden(*args, env=env)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_tasks_prints_an_aligned_table_and_json(daemon: DaemonProcess) -> None:
    lines = ok(cli(daemon, "tasks")).splitlines()
    assert lines[0].split() == ["NAME", "KIND", "CRON", "NEXT", "RUN", "(UTC)", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:]] == ["fails", "hello", "slow"]
    # Aligned: every row's KIND starts where the header's does.
    column = lines[0].index("KIND")
    assert all(line[column : column + 4] == "task" for line in lines[1:])
    assert "\x1b[" not in "\n".join(lines)  # no colour when not on a terminal
    body = json.loads(ok(cli(daemon, "tasks", "--json")))
    assert [task["name"] for task in body["tasks"]] == ["fails", "hello", "slow"]


def test_a_terminal_gets_colour(daemon: DaemonProcess) -> None:
    assert cli(daemon, "trigger", "fails", "--wait").returncode == 7
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNWARDEN_")}
    env.pop("NO_COLOR", None)
    env.update({"RUNWARDEN_URL": daemon.url, "RUNWARDEN_TOKEN": daemon.token or ""})
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "app.cli", "runs", "fails", "--limit", "1"],
        stdout=secondary,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    ) as child:
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(timeout=60) == 0
    os.close(primary)
    assert b"\x1b[31mfailed" in output  # red, on a terminal only


def test_trigger_wait_exits_with_the_runs_exit_code(daemon: DaemonProcess) -> None:
    done = cli(daemon, "trigger", "fails", "--wait")
    assert done.returncode == 7, done.stderr
    assert "failed" in done.stdout
    done = cli(daemon, "trigger", "hello", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    ended = json.loads(done.stdout)
    assert (ended["task_name"], ended["end_reason"], ended["exit_code"]) == ("hello", "success", 0)


def test_trigger_without_wait_prints_the_run_id(daemon: DaemonProcess) -> None:
    run_id = ok(cli(daemon, "trigger", "hello")).strip()
    shown = json.loads(ok(cli(daemon, "run", run_id, "--json")))
    assert shown["id"] == run_id
    assert shown["task_name"] == "hello"
    assert run_id in ok(cli(daemon, "run", run_id))


def test_runs_filters_sorts_and_limits(daemon: DaemonProcess) -> None:
    assert cli(daemon, "trigger", "fails", "--wait").returncode == 7
    ok(cli(daemon, "trigger", "hello", "--wait"))
    body = json.loads(ok(cli(daemon, "runs", "fails", "--status", "failed", "--json")))
    assert body["runs"]
    assert {run["task_name"] for run in body["runs"]} == {"fails"}
    assert {run["end_reason"] for run in body["runs"]} == {"failed"}
    body = json.loads(ok(cli(daemon, "runs", "--sort", "task_name:asc", "--limit", "1", "--json")))
    assert len(body["runs"]) == 1
    assert body["runs"][0]["task_name"] == "fails"
    assert body["total"] >= 2
    table = ok(cli(daemon, "runs", "--search", "hello"))
    assert table.splitlines()[0].split()[:3] == ["ID", "TASK", "STATUS"]
    assert all(" hello " in line for line in table.splitlines()[1:])


def test_logs_prints_a_runs_output(daemon: DaemonProcess) -> None:
    ended = json.loads(ok(cli(daemon, "trigger", "hello", "--wait", "--json")))
    assert ok(cli(daemon, "logs", ended["id"])).splitlines() == ["hello", "oops"]
    lines = [
        json.loads(line) for line in ok(cli(daemon, "logs", ended["id"], "--json")).splitlines()
    ]
    assert [(line["n"], line["stream"], line["text"]) for line in lines] == [
        (0, "stdout", "hello"),
        (1, "stderr", "oops"),
    ]
    followed = cli(daemon, "logs", "-f", ended["id"])
    assert ok(followed).splitlines() == ["hello", "oops"]
    assert "run ended: success" in followed.stderr


def test_stop_stops_a_running_run_and_says_so_when_it_cannot(daemon: DaemonProcess) -> None:
    run_id = ok(cli(daemon, "trigger", "slow")).strip()
    with daemon.client() as client:
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    ok(cli(daemon, "stop", run_id))
    with daemon.client() as client:
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json().get("end_reason") == "stopped")
    again = cli(daemon, "stop", run_id)
    assert again.returncode == 1
    assert again.stderr.startswith("runwarden: 409 Conflict:")


def test_a_missing_or_wrong_token_gets_a_hint(daemon: DaemonProcess) -> None:
    for token, hint in (("", "no token given"), ("wrong", "refused the token")):
        done = cli(daemon, "tasks", token=token)
        assert done.returncode == 1
        assert "401 Unauthorized" in done.stderr
        assert hint in done.stderr
        assert "RUNWARDEN_TOKEN" in done.stderr
        assert "Traceback" not in done.stderr


def test_not_found_names_what_was_not_found(daemon: DaemonProcess) -> None:
    for args, named in (
        (("run", "01NOSUCHRUN"), "run '01NOSUCHRUN'"),
        (("trigger", "nosuch"), "task 'nosuch'"),
        (("logs", "01NOSUCHRUN"), "run '01NOSUCHRUN'"),
        (("runs", "nosuch", "--status", "bogus"), None),
    ):
        done = cli(daemon, *args)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        if named:
            assert done.stderr.startswith(f"runwarden: not found: {named}"), done.stderr
        else:
            assert "422" in done.stderr
            assert "bogus" in done.stderr


def test_an_unreachable_daemon_is_one_clear_line() -> None:
    port = free_port()
    done = runwarden("tasks", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.startswith(f"runwarden: cannot reach the daemon at http://127.0.0.1:{port}")
    assert "RUNWARDEN_URL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_nodes_lists_the_cluster(daemon: DaemonProcess) -> None:
    body = json.loads(ok(cli(daemon, "nodes", "--json")))
    assert body["nodes"]
    assert {"id", "host", "pid", "alive"} <= set(body["nodes"][0])
    assert ok(cli(daemon, "nodes")).splitlines()[0].split()[:2] == ["ID", "HOST:PID"]


def test_reload_reports_what_changed_and_every_problem(database_url: str, tmp_path: Path) -> None:
    with running_daemon('[tasks.one]\nrun = "true"\n', database_url, tmp_path) as daemon:
        (tmp_path / "runwarden.toml").write_text(
            '[tasks.one]\nrun = "true"\n[tasks.two]\nrun = "true"\n'
        )
        lines = ok(cli(daemon, "reload")).splitlines()
        assert [line.split() for line in lines[1:]] == [
            ["added", "two"],
            ["removed", "-"],
            ["changed", "-"],
        ]
        (tmp_path / "runwarden.toml").write_text('[tasks.one]\nrun = "true"\ntimout = 1\n')
        done = cli(daemon, "reload")
        assert done.returncode == 1
        assert "config.tasks.one.timout" in done.stderr
        assert 'did you mean "timeout"' in done.stderr or 'did you mean "timeout"' in done.stderr


def test_notify_test_reports_the_servers_answer(daemon: DaemonProcess) -> None:
    done = cli(daemon, "notify", "test", "nosuch")
    assert done.returncode == 1
    # No such notifier (or, until the notifier routes land, no such route): said plainly.
    assert done.stderr.startswith("runwarden: not found: notifier 'nosuch'"), done.stderr
    assert "Traceback" not in done.stderr


def test_the_serve_path_does_not_load_the_client_libraries() -> None:
    code = (
        "import sys, app.cli, app.bootstrap; app.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'rich', 'httpx_sse')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture
def restartable(database_url: str, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    """A daemon the test may restart on the same port; the last one is stopped at the end."""
    config = tmp_path / "runwarden.toml"
    config.write_text(
        '[tasks.ticker]\nrun = "for i in $(seq 1 600); do echo tick $i; sleep 0.2; done"\n'
    )
    started = [start_daemon(config, database_url, tmp_path, token="cli-token", port=free_port())]
    yield started
    started[-1].terminate()


def test_logs_follow_resumes_across_a_daemon_restart(
    restartable: list[DaemonProcess], database_url: str, tmp_path: Path
) -> None:
    first = restartable[0]
    run_id = ok(cli(first, "trigger", "ticker")).strip()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNWARDEN_")}
    env.update({"RUNWARDEN_URL": first.url, "RUNWARDEN_TOKEN": "cli-token"})
    # Files, not pipes: what the follower printed is all there, whenever the test reads it.
    out_path, err_path = tmp_path / "follow.out", tmp_path / "follow.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        follower = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "logs", "-f", run_id],
            stdout=out_file,
            stderr=err_file,
            env=env,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: len(out_path.read_text().splitlines()) >= 3, timeout=60)
        # The daemon stops (its run is stopped with it) and comes back where it was.
        assert first.terminate() == 0
        port = int(first.url.rsplit(":", 1)[1])
        config = tmp_path / "runwarden.toml"
        restartable.append(
            start_daemon(config, database_url, tmp_path, token="cli-token", port=port)
        )
        follower.wait(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    err = err_path.read_text()
    assert follower.returncode == 0, err
    lines = out_path.read_text().splitlines()
    assert lines[:3] == ["tick 1", "tick 2", "tick 3"]
    # Every line once, in order, with no gap: the reconnect resumed after the last one seen.
    assert lines == [f"tick {n}" for n in range(1, len(lines) + 1)]
    assert "reconnecting" in err
    assert "run ended: stopped" in err
    with restartable[-1].client() as client:
        assert client.get(f"/api/runs/{run_id}").json()["end_reason"] == "stopped"
