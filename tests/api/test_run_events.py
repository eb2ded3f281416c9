"""GET /api/runs/stream over real HTTP: run lifecycle events from real daemons.

Two daemons share one database, as a deployment with several replicas does: an event of a
run that daemon A executes must reach a stream opened on daemon B.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.postgres.embedded import run_coroutine
from tests.support.daemon import DaemonProcess, start_daemon, wait_for
from tests.support.databases import execute

CONFIG = """
[tasks.ok]
run = "true"

[tasks.bad]
run = "exit 1"

[tasks.other]
run = "true"

[tasks.sleeper]
run = "sleep 30"
max_concurrent = 1
on_overlap = "skip"
"""

# Short keep-alives let a reader notice it was asked to stop; two streams at most per
# daemon make the limit testable.
ENV = {"RUNWARDEN_EVENTS_KEEPALIVE": "0.3", "RUNWARDEN_EVENTS_MAX_STREAMS": "3"}
ENDINGS = {"run.completed", "run.failed"}


class EventReader:
    """One SSE stream read by a thread: its events in order, and its comments."""

    def __init__(self, daemon: DaemonProcess, params: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(
            base_url=daemon.url, headers=daemon.headers, timeout=httpx.Timeout(30, read=10)
        )
        self.params = params or {}
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def open(self) -> int:
        """Connect; the response status once subscribed (200) or refused."""
        self._thread.start()
        # Sent once the daemon has subscribed: from here on every change is streamed.
        wait_for(lambda: "connected" in self.comments or self.ended.is_set())
        assert self.status is not None
        return self.status

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self.client.close()

    def __enter__(self) -> EventReader:
        assert self.open() == 200
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/runs/stream", params=self.params) as response:
                self.status = response.status_code
                if not response.headers["content-type"].startswith("text/event-stream"):
                    return
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif fields:
                        self.events.append(
                            {
                                "id": int(fields["id"]),
                                "event": fields["event"],
                                "data": json.loads(fields["data"]),
                            }
                        )
                        fields = {}
        finally:
            self.ended.set()

    def of_run(self, run_id: str) -> list[str]:
        """The kinds of the events about one run, in the order they came."""
        return [e["event"] for e in self.events if e["data"]["id"] == run_id]

    def wait_for_end_of(self, run_id: str) -> list[str]:
        wait_for(lambda: ENDINGS & set(self.of_run(run_id)))
        return self.of_run(run_id)


def _start(database_url: str, workdir: Any) -> DaemonProcess:
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    return start_daemon(config, database_url, workdir, ENV)


@pytest.fixture(scope="module")
def daemons(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    first = _start(module_database_url, tmp_path_factory.mktemp("events-a"))
    try:
        second = _start(module_database_url, tmp_path_factory.mktemp("events-b"))
        try:
            yield first, second
        finally:
            second.terminate()
    finally:
        first.terminate()


@pytest.fixture
def daemon_a(daemons: tuple[DaemonProcess, DaemonProcess]) -> DaemonProcess:
    return daemons[0]


@pytest.fixture
def daemon_b(daemons: tuple[DaemonProcess, DaemonProcess]) -> DaemonProcess:
    return daemons[1]


def trigger(daemon: DaemonProcess, task: str, expect: int = 201) -> dict[str, Any]:
    with daemon.client() as client:
        response = client.post(f"/api/tasks/{task}/run")
    assert response.status_code == expect, response.text
    return response.json()


def test_a_successful_run_streams_created_started_completed(daemon_a: DaemonProcess) -> None:
    with EventReader(daemon_a) as reader:
        run = trigger(daemon_a, "ok")
        assert reader.wait_for_end_of(run["id"]) == ["run.created", "run.started", "run.completed"]
    created, started, completed = (e for e in reader.events if e["data"]["id"] == run["id"])
    assert created["data"] == run
    assert started["data"]["status"] == "running"
    assert completed["data"]["status"] == "ended"
    assert completed["data"]["end_reason"] == "success"
    assert completed["data"]["start_at"] == started["data"]["start_at"]


def test_a_failing_run_streams_created_started_failed(daemon_a: DaemonProcess) -> None:
    with EventReader(daemon_a) as reader:
        run = trigger(daemon_a, "bad")
        assert reader.wait_for_end_of(run["id"]) == ["run.created", "run.started", "run.failed"]
    failed = reader.events[-1]["data"]
    assert (failed["end_reason"], failed["exit_code"]) == ("failed", 1)


def test_a_run_on_one_daemon_streams_on_another_sharing_the_database(
    daemon_a: DaemonProcess, daemon_b: DaemonProcess
) -> None:
    with EventReader(daemon_b) as reader:
        run = trigger(daemon_a, "ok")
        assert reader.wait_for_end_of(run["id"]) == ["run.created", "run.started", "run.completed"]


def test_a_skipped_trigger_streams_created_then_failed_and_a_stop_streams_failed(
    daemon_a: DaemonProcess,
) -> None:
    with EventReader(daemon_a) as reader:
        first = trigger(daemon_a, "sleeper")
        wait_for(lambda: "run.started" in reader.of_run(first["id"]))
        skipped_id = trigger(daemon_a, "sleeper", expect=409)["run_id"]
        assert reader.wait_for_end_of(skipped_id) == ["run.created", "run.failed"]
        with daemon_a.client() as client:
            stopped = client.post(f"/api/tasks/sleeper/runs/{first['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        assert reader.wait_for_end_of(first["id"]) == [
            "run.created",
            "run.started",
            "run.failed",
        ]
    endings = {
        e["data"]["id"]: e["data"]["end_reason"]
        for e in reader.events
        if e["event"] == "run.failed"
    }
    assert endings[skipped_id] == "skipped"
    assert endings[first["id"]] == "stopped"


def test_deleting_a_run_streams_run_deleted_on_every_daemon(
    daemon_a: DaemonProcess, daemon_b: DaemonProcess
) -> None:
    with daemon_a.client() as client:
        run = client.post("/api/tasks/ok/run", params={"wait": "true"}).json()
    assert run["status"] == "ended"
    with EventReader(daemon_a) as on_a, EventReader(daemon_b) as on_b:
        with daemon_a.client() as client:
            response = client.delete(f"/api/tasks/ok/runs/{run['id']}")
        assert response.status_code == 204, response.text
        for reader in (on_a, on_b):
            # Its earlier events may still be on their way when the streams open.
            wait_for(lambda r=reader: "run.deleted" in r.of_run(run["id"]))
            assert reader.of_run(run["id"])[-1] == "run.deleted"
            deleted = reader.events[-1]["data"]
            assert (deleted["id"], deleted["task_name"]) == (run["id"], "ok")


def test_the_task_name_filter_streams_only_that_tasks_events(daemon_a: DaemonProcess) -> None:
    with EventReader(daemon_a, {"task_name": "other"}) as reader:
        skipped = trigger(daemon_a, "ok")
        kept = trigger(daemon_a, "other")
        reader.wait_for_end_of(kept["id"])
    with daemon_a.client() as client:
        assert client.get(f"/api/runs/{skipped['id']}").json()["status"] == "ended"
    assert {e["data"]["task_name"] for e in reader.events} == {"other"}


def test_event_ids_increase_within_a_stream(daemon_a: DaemonProcess) -> None:
    with EventReader(daemon_a) as reader:
        for task in ("ok", "bad", "ok"):
            last = trigger(daemon_a, task)
        reader.wait_for_end_of(last["id"])
    ids = [e["id"] for e in reader.events]
    assert len(ids) >= 9
    assert ids == sorted(set(ids))


def test_a_quiet_stream_sends_keep_alive_comments(daemon_b: DaemonProcess) -> None:
    with EventReader(daemon_b) as reader:
        wait_for(lambda: "keep-alive" in reader.comments)


def test_streams_beyond_the_limit_get_503_with_retry_after(daemon_b: DaemonProcess) -> None:
    # Streams of earlier tests may hold slots until the daemon notices they are gone, so
    # open streams until one is refused: that must happen within the limit of 3.
    readers = [EventReader(daemon_b) for _ in range(5)]
    try:
        statuses = []
        for reader in readers:
            statuses.append(reader.open())
            if statuses[-1] != 200:
                break
        assert statuses[-1] == 503
        assert 1 <= statuses.count(200) <= 3
        with daemon_b.client() as client:
            response = client.get("/api/runs/stream")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
    finally:
        for reader in readers:
            if reader.status is not None:
                reader.close()
    # The slots come back once those streams are closed.
    wait_for(lambda: _opens(daemon_b))


def _opens(daemon: DaemonProcess) -> bool:
    with daemon.client() as client, client.stream("GET", "/api/runs/stream") as response:
        return response.status_code == 200


def test_a_lost_database_feed_ends_streams_and_the_daemon_listens_again(
    daemon_a: DaemonProcess, module_database_url: str
) -> None:
    with EventReader(daemon_a) as reader:
        # Cut every daemon's LISTEN connection, as a database restart does.
        run_coroutine(
            lambda: execute(
                module_database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'runwarden-events' AND datname = current_database()",
            )
        )
        wait_for(reader.ended.is_set)
    assert any(c.startswith("disconnected: the database feed") for c in reader.comments)
    # Until it listens again the daemon answers 503; then events flow as before.
    wait_for(lambda: _opens(daemon_a))
    with EventReader(daemon_a) as reader:
        run = trigger(daemon_a, "ok")
        assert reader.wait_for_end_of(run["id"]) == ["run.created", "run.started", "run.completed"]
