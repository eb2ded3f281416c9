"""Following a run's log live over SSE (``.../log/stream``), on a real daemon."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import httpx
import pytest

from tests.api.logs_support import (
    daemon_fixture,
    log_daemon,
    log_url,
    seq_run_fixture,
    sse_events,
    trigger,
    wait_ended,
)
from tests.support.daemon import DaemonProcess, wait_for

PER_CLIENT_STREAMS = 8

# The module's daemon and finished run: fixtures shared with the other log tests.
__all__ = ["daemon_fixture", "seq_run_fixture"]


def without_schema(data: dict) -> dict:  # type: ignore[type-arg]
    """The event data less its ``$schema``, which every object must carry."""
    assert data.pop("$schema").endswith(".json")
    return data


def test_a_stream_replays_from_the_end_of_an_ended_run_then_says_done(
    client: httpx.Client, seq_run: str
) -> None:
    with client.stream("GET", log_url("seq", seq_run, "/stream"), params={"from": -3}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    lines = [json.loads(e["data"]) for e in events if e.get("event") == "line"]
    assert [(line["n"], line["text"]) for line in lines] == [
        (2497, "2498"),
        (2498, "2499"),
        (2499, "2500"),
    ]
    assert [e["id"] for e in events[:3]] == ["2497", "2498", "2499"]
    assert events[-1]["event"] == "done"
    assert without_schema(json.loads(events[-1]["data"])) == {
        "final_line": 2499,
        "status": "success",
    }


def test_last_event_id_wins_over_from(client: httpx.Client, seq_run: str) -> None:
    url = log_url("seq", seq_run, "/stream")
    with client.stream("GET", url, params={"from": 0}, headers={"Last-Event-ID": "2497"}) as r:
        events = list(sse_events(r))
    assert [e.get("id") for e in events] == ["2498", "2499", None]


def test_a_run_without_output_streams_only_done(client: httpx.Client) -> None:
    run_id = trigger(client, "other")
    wait_ended(client, run_id)
    with client.stream("GET", log_url("other", run_id, "/stream")) as response:
        events = list(sse_events(response))
    assert [e["event"] for e in events] == ["done"]
    assert without_schema(json.loads(events[0]["data"])) == {"final_line": -1, "status": "success"}


def test_a_reconnect_with_last_event_id_continues_without_gap_or_duplicate(
    client: httpx.Client,
) -> None:
    run_id = trigger(client, "chatty")
    url = log_url("chatty", run_id, "/stream")
    received: list[dict[str, Any]] = []
    with client.stream("GET", url) as response:
        for event in sse_events(response):
            assert event.get("event") != "done"
            if event.get("event") == "line":
                received.append(json.loads(event["data"]))
                last_id = event["id"]
            if len(received) >= 300:
                break  # disconnect mid-run
    done: dict[str, Any] = {}
    with client.stream("GET", url, headers={"Last-Event-ID": last_id}) as response:
        for event in sse_events(response):
            if event.get("event") == "line":
                received.append(json.loads(event["data"]))
            elif event.get("event") == "done":
                done = json.loads(event["data"])
    assert [line["n"] for line in received] == list(range(3000))
    assert [line["text"] for line in received] == [f"line {i}" for i in range(1, 3001)]
    assert without_schema(done) == {"final_line": 2999, "status": "success"}


def test_a_quiet_stream_sends_keep_alives_and_ends_when_the_run_is_stopped(
    client: httpx.Client,
) -> None:
    run_id = trigger(client, "waiting")
    seen: list[dict[str, str]] = []
    with client.stream("GET", log_url("waiting", run_id, "/stream")) as response:
        for event in sse_events(response):
            seen.append(event)
            if event == {"comment": "keep-alive"} and seen.count(event) == 1:
                assert client.post(f"/api/tasks/waiting/runs/{run_id}/stop").status_code == 200
    assert json.loads(seen[0]["data"])["text"] == "started"
    assert {"comment": "keep-alive"} in seen
    assert seen[-1]["event"] == "done"
    assert json.loads(seen[-1]["data"])["status"] == "stopped"


def test_a_client_that_stops_reading_does_not_hold_up_the_run(
    client: httpx.Client, daemon: DaemonProcess
) -> None:
    started = time.monotonic()
    control = trigger(client, "flood")
    assert wait_ended(client, control)["end_reason"] == "success"
    control_seconds = time.monotonic() - started

    run_id = trigger(client, "flood")
    with client.stream("GET", log_url("flood", run_id, "/stream")) as response:
        first = next(sse_events(response))
        assert first["event"] == "line"
        # Not reading any further: the daemon's writes back up into the socket.
        started = time.monotonic()
        with daemon.client() as other:
            assert other.get("/health", timeout=5).status_code == 200
            assert wait_ended(other, run_id, timeout=60)["end_reason"] == "success"
            assert other.get("/health", timeout=5).status_code == 200
        stalled_seconds = time.monotonic() - started
    print(f"flood run: {control_seconds:.1f}s alone, {stalled_seconds:.1f}s with a stalled reader")
    page = client.get(log_url("flood", run_id), params={"from": -1}).json()
    assert page["total_lines"] == 100000


def test_streams_beyond_the_per_client_limit_get_503(client: httpx.Client) -> None:
    run_id = trigger(client, "waiting")
    url = log_url("waiting", run_id, "/stream")

    def limit_reached() -> bool:
        # Streams of earlier tests may still be closing; try again until they have.
        with contextlib.ExitStack() as open_streams:
            for _ in range(PER_CLIENT_STREAMS):
                if open_streams.enter_context(client.stream("GET", url)).status_code != 200:
                    return False
            response = open_streams.enter_context(client.stream("GET", url))
            assert response.status_code == 503
            response.read()
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["status"] == 503
            return True

    wait_for(limit_reached, timeout=10)

    # Closed streams give their slots back.
    def opens() -> bool:
        with client.stream("GET", url) as response:
            return response.status_code == 200

    wait_for(opens, timeout=10)
    assert client.post(f"/api/tasks/waiting/runs/{run_id}/stop").status_code == 200


def test_a_stream_on_another_daemon_follows_the_run_through_the_database(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Both started before the run, so neither takes the other's run for a crashed one.
    with (
        log_daemon(database_url, tmp_path_factory.mktemp("runner")) as runner,
        log_daemon(database_url, tmp_path_factory.mktemp("watcher")) as watcher,
        runner.client() as on_runner,
        watcher.client() as on_watcher,
    ):
        run_id = trigger(on_runner, "chatty")
        with on_watcher.stream("GET", log_url("chatty", run_id, "/stream")) as r:
            events = list(sse_events(r))
    lines = [json.loads(e["data"])["text"] for e in events if e.get("event") == "line"]
    assert lines == [f"line {i}" for i in range(1, 3001)]
    assert without_schema(json.loads(events[-1]["data"])) == {
        "final_line": 2999,
        "status": "success",
    }
