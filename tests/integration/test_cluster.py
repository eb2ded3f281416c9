"""Several real daemons on one PostgreSQL acting as one cluster.

Each test starts real ``runwarden serve`` processes on the test's database. Node deaths
are the daemon and its process groups killed together (``tests/support/cluster.py``).
Waits are bounded guards that turn a hang into a failure; durations are measured by
``bench/failover.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import (
    TcpProxy,
    cluster,
    kill_node,
    node_id,
    processes_with,
    wait_until,
)
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.slow

FAST = '[cluster]\nlease = "3s"\nheartbeat = "1s"\n'
SLEEPER = '[tasks.sleeper]\nrun = "sleep 60"\ngraceful_stop = "1s"\n'


def trigger(daemon: DaemonProcess, task: str, **params: str) -> dict:  # type: ignore[type-arg]
    with daemon.client() as client:
        answer = client.post(f"/api/tasks/{task}/run", params=params)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


def run_of(daemon: DaemonProcess, run_id: str) -> dict:  # type: ignore[type-arg]
    with daemon.client() as client:
        return client.get(f"/api/runs/{run_id}").json()  # type: ignore[no-any-return]


def runs_of(daemon: DaemonProcess, task: str) -> list[dict]:  # type: ignore[type-arg]
    with daemon.client() as client:
        page = client.get(f"/api/tasks/{task}/runs", params={"limit": 1000}).json()
    return page["runs"]  # type: ignore[no-any-return]


def alive_nodes(daemon: DaemonProcess) -> list[dict]:  # type: ignore[type-arg]
    with daemon.client() as client:
        nodes = client.get("/api/nodes").json()["nodes"]
    return [n for n in nodes if n["alive"]]


def instances(daemons: list[DaemonProcess], service: str) -> list[int]:
    return processes_with(daemons, "RUNWARDEN_TASK", service)


def test_a_joining_node_leaves_the_running_runs_of_live_nodes_alone(
    database_url: str, tmp_path: Path
) -> None:
    with cluster(SLEEPER, database_url, tmp_path, 1) as nodes:
        first = nodes.daemons[0]
        run = trigger(first, "sleeper")
        wait_until(lambda: run_of(first, run["id"])["status"] == "running")
        (pid,) = wait_until(lambda: processes_with([first], "RUNWARDEN_RUN_ID", run["id"]))
        second = nodes.start()
        wait_until(lambda: len(alive_nodes(second)) == 2)
        time.sleep(2)  # a joining node settles what it will settle at start
        assert run_of(second, run["id"])["status"] == "running"
        assert processes_with([first], "RUNWARDEN_RUN_ID", run["id"]) == [pid]
        listed = {n["id"]: n for n in alive_nodes(second)}
        assert listed[node_id(first)]["running_runs"] == 1
        assert {n["config_hash"] for n in listed.values()} == {
            listed[node_id(second)]["config_hash"]
        }


@pytest.mark.parametrize("size", [2, 3])
def test_a_service_runs_exactly_its_instances_across_the_nodes(
    database_url: str, tmp_path: Path, size: int
) -> None:
    config = '[services.web]\ninstances = 2\nrun = "sleep 600"\n'
    with cluster(config, database_url, tmp_path, size) as nodes:
        wait_until(lambda: len(instances(nodes.daemons, "web")) == 2)
        for _ in range(20):  # sampled: never a third one, never one missing
            assert len(instances(nodes.daemons, "web")) == 2
            time.sleep(0.1)
        with nodes.daemons[-1].client() as client:
            assert client.post("/api/tasks/web/restart").status_code == 200
        wait_until(lambda: len(instances(nodes.daemons, "web")) == 2)
        running = [r for r in runs_of(nodes.daemons[0], "web") if r["status"] == "running"]
        assert sorted(r["replica_index"] for r in running) == [0, 1]
        with nodes.daemons[-1].client() as client:
            assert client.post("/api/tasks/web/stop").status_code == 200
        assert instances(nodes.daemons, "web") == []


def test_a_stop_sent_to_another_node_ends_the_process(database_url: str, tmp_path: Path) -> None:
    with cluster(FAST + SLEEPER, database_url, tmp_path, 2) as nodes:
        owner, other = nodes.daemons
        run = trigger(owner, "sleeper")
        wait_until(lambda: processes_with([owner], "RUNWARDEN_RUN_ID", run["id"]))
        with other.client() as client:
            answer = client.post(f"/api/tasks/sleeper/runs/{run['id']}/stop")
        assert answer.status_code == 200, answer.text
        ended = run_of(other, run["id"])
        assert (ended["status"], ended["end_reason"]) == ("ended", "stopped")
        assert processes_with([owner], "RUNWARDEN_RUN_ID", run["id"]) == []


def test_terminate_and_delete_reach_a_run_on_another_node(
    database_url: str, tmp_path: Path
) -> None:
    config = FAST + '[tasks.latest]\nrun = "sleep 60"\non_overlap = "terminate"\n'
    with cluster(config, database_url, tmp_path, 2) as nodes:
        first, second = nodes.daemons
        old = trigger(first, "latest")
        wait_until(lambda: processes_with([first], "RUNWARDEN_RUN_ID", old["id"]))
        with second.client() as client:
            assert client.delete(f"/api/tasks/latest/runs/{old['id']}").status_code == 409
        new = trigger(second, "latest")
        stopped = wait_until(lambda: (r := run_of(second, old["id"]))["status"] == "ended" and r)
        assert stopped["end_reason"] == "stopped"
        assert processes_with([first], "RUNWARDEN_RUN_ID", old["id"]) == []
        wait_until(lambda: processes_with([second], "RUNWARDEN_RUN_ID", new["id"]))


def test_a_log_stream_and_a_waiting_trigger_work_from_another_node(
    database_url: str, tmp_path: Path
) -> None:
    config = (
        FAST + '[tasks.talker]\nrun = "for i in $(seq 1 30); do echo line $i; sleep 0.05; done"\n'
    )
    with cluster(config, database_url, tmp_path, 2) as nodes:
        owner, other = nodes.daemons
        run = trigger(owner, "talker")
        lines, done = [], None
        with (
            other.client() as client,
            client.stream("GET", f"/api/tasks/talker/runs/{run['id']}/log/stream") as stream,
        ):
            event = None
            for raw in stream.iter_lines():
                if raw.startswith("event: "):
                    event = raw.removeprefix("event: ")
                elif raw.startswith("data: ") and event == "line":
                    lines.append(json.loads(raw.removeprefix("data: "))["text"])
                elif raw.startswith("data: ") and event == "done":
                    done = json.loads(raw.removeprefix("data: "))
                    break
        assert lines == [f"line {i}" for i in range(1, 31)]
        assert done is not None
        assert done["status"] == "success"
        # Queued behind a run of the first node (max_concurrent = 1 holds cluster-wide),
        # then run by the second, which answers when it ended.
        first = trigger(owner, "talker")
        with other.client() as client:
            waited = client.post("/api/tasks/talker/run", params={"wait": "true"})
        assert waited.headers["X-Runwarden-Wait"] == "ended"
        body = waited.json()
        assert (body["status"], body["end_reason"]) == ("ended", "success")
        assert run_of(other, first["id"])["end_at"] <= body["start_at"]


def test_max_concurrent_one_never_runs_two_processes_across_nodes(
    database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "spans.log"
    config = (
        FAST + "[tasks.single]\n"
        f'run = "echo start $(date +%s%N) >> {log}; sleep 0.2; echo end $(date +%s%N) >> {log}"\n'
        "queue_max = 100\n"
    )
    with cluster(config, database_url, tmp_path, 2) as nodes:
        for i in range(10):
            trigger(nodes.daemons[i % 2], "single")
        wait_until(
            lambda: sum(r["status"] == "ended" for r in runs_of(nodes.daemons[0], "single")) == 10,
            timeout=60,
        )
        runs = runs_of(nodes.daemons[1], "single")
        assert {r["end_reason"] for r in runs} == {"success"}
    events = [line.split() for line in log.read_text().splitlines()]
    assert len(events) == 20
    # In time order, starts and ends alternate: no second process began before an end.
    ordered = [kind for kind, _ in sorted(events, key=lambda e: int(e[1]))]
    assert ordered == ["start", "end"] * 10


def test_a_node_that_dies_with_its_machine_is_taken_over(database_url: str, tmp_path: Path) -> None:
    config = (
        SLEEPER
        + '[services.web]\ninstances = 2\nrun = "sleep 600"\n'
        + '[tasks.retried]\nrun = "sleep 60"\nretry_attempts = 1\nretry_delay = "0s"\n'
    )
    with cluster(config, database_url, tmp_path, 2) as nodes:
        victim, survivor = nodes.daemons
        wait_until(lambda: len(instances(nodes.daemons, "web")) == 2)
        doomed = [trigger(victim, "sleeper"), trigger(victim, "retried")]
        wait_until(lambda: all(run_of(victim, r["id"])["status"] == "running" for r in doomed))
        kill_node(victim)
        for run in doomed:
            crashed = wait_until(
                lambda run=run: (r := run_of(survivor, run["id"]))["status"] == "ended" and r
            )
            assert (crashed["end_reason"], crashed["exit_code"]) == ("crashed", -2)
        wait_until(lambda: len(instances([survivor], "web")) == 2)
        # The retry of the crashed run is taken over and run by the survivor.
        wait_until(
            lambda: any(
                r["retry_attempt"] == 1 and r["status"] == "running"
                for r in runs_of(survivor, "retried")
            )
        )
        dead = [n for n in _nodes(survivor) if not n["alive"]]
        assert [n["pid"] for n in dead] == [victim.proc.pid]


def test_a_frozen_node_fences_itself_and_no_run_is_recorded_twice(
    database_url: str, tmp_path: Path
) -> None:
    with cluster(FAST + SLEEPER, database_url, tmp_path, 2) as nodes:
        frozen, survivor = nodes.daemons
        before = node_id(frozen)
        run = trigger(frozen, "sleeper")
        (pid,) = wait_until(lambda: processes_with([frozen], "RUNWARDEN_RUN_ID", run["id"]))
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        try:
            crashed = wait_until(
                lambda: (r := run_of(survivor, run["id"]))["status"] == "ended" and r
            )
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        # Woken up, it finds it lost its lease: its process dies, its id changes.
        wait_until(lambda: not _alive(pid))
        wait_until(lambda: node_id(frozen) != before)
        time.sleep(1)  # time for any late write of the old node to land (none may)
        final = run_of(survivor, run["id"])
        assert (final["end_reason"], final["exit_code"], final["end_at"]) == (
            "crashed",
            -2,
            crashed["end_at"],
        )
        assert len(runs_of(survivor, "sleeper")) == 1


def test_a_node_cut_off_from_the_database_fences_itself(database_url: str, tmp_path: Path) -> None:
    proxy = TcpProxy(database_url)
    try:
        with cluster(FAST + SLEEPER, database_url, tmp_path, 1) as nodes:
            survivor = nodes.daemons[0]
            isolated = nodes.start(proxy.url)
            before = node_id(isolated)
            run = trigger(isolated, "sleeper")
            (pid,) = wait_until(lambda: processes_with([isolated], "RUNWARDEN_RUN_ID", run["id"]))
            proxy.cut()
            # Alone with its processes while others live: it kills them before its lease
            # can run out, and the survivor records the run crashed.
            wait_until(lambda: not _alive(pid))
            crashed = wait_until(
                lambda: (r := run_of(survivor, run["id"]))["status"] == "ended" and r
            )
            assert crashed["end_reason"] == "crashed"
            proxy.mend()
            wait_until(lambda: _safe_node_id(isolated) not in (None, before), timeout=60)
            final = run_of(isolated, run["id"])
            assert (final["end_reason"], final["end_at"]) == ("crashed", crashed["end_at"])
            assert len(runs_of(isolated, "sleeper")) == 1
    finally:
        proxy.close()


def test_a_node_leaving_gracefully_hands_its_slots_over_without_a_lease_wait(
    database_url: str, tmp_path: Path
) -> None:
    # A lease far longer than the guard below: only a handover can pass.
    config = '[cluster]\nlease = "60s"\n[services.web]\ninstances = 2\nrun = "sleep 600"\n'
    with cluster(config, database_url, tmp_path, 1) as nodes:
        leaving = nodes.daemons[0]
        wait_until(lambda: len(instances([leaving], "web")) == 2)
        staying = nodes.start()
        assert leaving.terminate() == 0
        wait_until(lambda: len(instances([staying], "web")) == 2, timeout=15)
        ended = [r for r in runs_of(staying, "web") if r["status"] == "ended"]
        assert {r["end_reason"] for r in ended} == {"stopped"}
        assert [n["id"] for n in _nodes(staying)] == [node_id(staying)]


def _nodes(daemon: DaemonProcess) -> list[dict]:  # type: ignore[type-arg]
    with daemon.client() as client:
        return client.get("/api/nodes").json()["nodes"]  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _safe_node_id(daemon: DaemonProcess) -> str | None:
    try:
        return node_id(daemon)
    except (httpx.HTTPError, KeyError, ValueError):
        return None
