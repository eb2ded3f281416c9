"""Notifications from several daemons on one database: each delivery sent once when
nothing crashes; every one still sent (same id) when a daemon dies holding claims.

Waits are bounded guards that turn a hang into a failure, not timing assertions.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import cluster, kill_node, wait_until
from tests.support.daemon import DaemonProcess
from tests.support.receiver import Answer, receiver

pytestmark = pytest.mark.slow

CONFIG = """
[cluster]
lease = "3s"
heartbeat = "1s"

[notify]
coalesce_window = "0s"

[notifiers.hook]
type = "webhook"
url = "{url}/hook"
timeout = "{timeout}"
on = ["failed"]

[tasks.fails]
run = "exit 1"
max_concurrent = 8
queue_max = 1000
"""


def _test(daemon: DaemonProcess) -> str:
    with daemon.client() as client:
        answer = client.post("/api/notifiers/hook/test")
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _fail(daemon: DaemonProcess) -> str:
    with daemon.client() as client:
        answer = client.post("/api/tasks/fails/run")
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _notifications(daemon: DaemonProcess, **params: Any) -> list[dict[str, Any]]:
    with daemon.client() as client:
        page = client.get("/api/notifications", params={"limit": 1000, **params}).json()
    return list(page["notifications"])


def _all_delivered(daemon: DaemonProcess, count: int, timeout: float) -> list[dict[str, Any]]:
    """The delivered notifications once there are ``count`` (a bound on a hang)."""

    def found() -> list[dict[str, Any]] | None:
        delivered = _notifications(daemon, status="delivered")
        return delivered if len(delivered) == count else None

    return list(wait_until(found, timeout=timeout))


def test_two_daemons_deliver_200_events_exactly_once(database_url: str, tmp_path: Path) -> None:
    with receiver() as hook:
        hook.script("/hook", Answer(200))
        config = CONFIG.format(url=hook.url, timeout="10s")
        env = {"RUNWARDEN_NOTIFY_POLL": "0.2"}
        with cluster(config, database_url, tmp_path, 2, env) as nodes:
            first, second = nodes.daemons
            with ThreadPoolExecutor(8) as pool:
                tests = list(pool.map(_test, [first, second] * 50))
                runs = list(pool.map(_fail, [second, first] * 50))
            received = hook.wait_for("/hook", 200, timeout=180)

            delivered = _all_delivered(first, 200, timeout=120)
        counts = Counter(r.webhook_id for r in hook.at("/hook"))
    assert len(received) == 200
    assert set(counts.values()) == {1}  # nothing twice
    assert set(counts) == {d["id"] for d in delivered}
    assert set(tests) <= set(counts)
    assert {d["run_id"] for d in delivered if d["type"] == "run.failed"} == set(runs)


def test_a_daemon_killed_holding_claims_loses_nothing(database_url: str, tmp_path: Path) -> None:
    with receiver() as hook:
        # The first node's tries hang at the receiver: it dies holding their claims.
        hook.script("/hook", *[Answer(200, hang=60)] * 20, Answer(200))
        config = CONFIG.format(url=hook.url, timeout="30s")
        env = {"RUNWARDEN_NOTIFY_POLL": "0.2", "RUNWARDEN_NOTIFY_LEASE": "3"}
        with cluster(config, database_url, tmp_path, 1, env) as nodes:
            doomed = nodes.daemons[0]
            ids = [_test(doomed) for _ in range(20)]
            held = hook.wait_for("/hook", 20)
            assert {r.webhook_id for r in held} == set(ids)
            kill_node(doomed)
            hook.release()
            survivor = nodes.start()

            delivered = _all_delivered(survivor, 20, timeout=120)
        after = hook.at("/hook")[20:]
    assert {d["id"] for d in delivered} == set(ids)
    assert {r.webhook_id for r in after} == set(ids)  # each sent again, same id
    assert all(d["attempt_count"] >= 2 for d in delivered)


MISSED = """
[notifiers.hook]
type = "webhook"
url = "{url}/hook"
on = ["missed"]

[tasks.ticker]
run = "true"
cron = "* * * * * *"
"""


def test_ticks_missed_while_no_daemon_was_up_are_reported(
    database_url: str, tmp_path: Path
) -> None:
    with receiver() as hook:
        hook.script("/hook", Answer(200))
        env = {"RUNWARDEN_NOTIFY_POLL": "0.2"}
        with cluster(MISSED.format(url=hook.url), database_url, tmp_path, 1, env) as nodes:
            first = nodes.daemons[0]
            with first.client() as client:
                wait_until(lambda: client.get("/api/tasks/ticker/runs").json()["total"] >= 1)
            first.terminate()
            time.sleep(3)  # ticks pass while no daemon is up
            nodes.start()
            received = hook.wait_for("/hook", 1)[0]
    body = received.json
    assert body["type"] == "run.missed"
    assert body["data"]["task"] == "ticker"
    assert body["data"]["count"] >= 2
    assert body["data"]["catch_up"] == "latest"


def test_a_stopping_daemon_gives_its_claims_back(database_url: str, tmp_path: Path) -> None:
    with receiver() as hook:
        hook.script("/hook", *[Answer(200, hang=60)] * 5, Answer(200))
        config = CONFIG.format(url=hook.url, timeout="30s")
        # A lease far beyond the test's wait: only the give-back lets the next node send.
        env = {"RUNWARDEN_NOTIFY_POLL": "0.2", "RUNWARDEN_NOTIFY_LEASE": "600"}
        with cluster(config, database_url, tmp_path, 1, env) as nodes:
            leaving = nodes.daemons[0]
            ids = [_test(leaving) for _ in range(5)]
            hook.wait_for("/hook", 5)
            assert leaving.terminate() == 0
            hook.release()
            successor = nodes.start()

            delivered = _all_delivered(successor, 5, timeout=60)
    assert {d["id"] for d in delivered} == set(ids)
