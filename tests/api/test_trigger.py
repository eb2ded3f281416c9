"""Triggering a run over HTTP: cloud idempotency under concurrency, bodies, ``wait=true``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.daemon import DaemonProcess, module_daemon, wait_for

CONFIG = """
[tasks.quick]
run = "true"

[tasks.fails-later]
run = "sleep 1; exit 3"

[tasks.sleeper]
run = "sleep 30"
"""

CROWD = 50


daemon = module_daemon(CONFIG, "trigger")


def test_fifty_concurrent_identical_cloud_triggers_create_exactly_one_run(
    daemon: DaemonProcess, client: httpx.Client
) -> None:
    body = {"external_execution_id": "orchestrator-exec-42"}
    start = threading.Barrier(CROWD)

    def trigger(_: int) -> httpx.Response:
        with daemon.client() as own:
            start.wait()
            return own.post("/api/tasks/quick/run", json=body)

    with ThreadPoolExecutor(CROWD) as pool:
        responses = list(pool.map(trigger, range(CROWD)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (CROWD - 1) + [201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert all(r.json()["triggered_by"] == "cloud" for r in responses)
    assert all(
        r.json()["external_execution_id"] == body["external_execution_id"] for r in responses
    )
    listed = client.get("/api/tasks/quick/runs", params={"search": ids.pop()}).json()
    assert listed["total"] == 1


def test_a_body_with_an_unknown_field_is_a_422_naming_the_body(client: httpx.Client) -> None:
    response = client.post("/api/tasks/quick/run", json={"external_id": "typo"})

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["detail"] == "validation failed"
    assert [e["location"] for e in problem["errors"]] == ["body"]
    assert "external_id" in problem["errors"][0]["message"]


def test_malformed_json_is_a_400_problem(client: httpx.Client) -> None:
    response = client.post(
        "/api/tasks/quick/run",
        content=b'{"external_execution_id": ',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Bad Request"


@pytest.mark.slow
def test_wait_returns_the_finished_run(client: httpx.Client) -> None:
    response = client.post("/api/tasks/fails-later/run", params={"wait": "true"})

    assert response.status_code == 201
    assert response.headers["x-runwarden-wait"] == "ended"
    run = response.json()
    assert (run["status"], run["end_reason"], run["exit_code"]) == ("ended", "failed", 3)
    assert "end_at" in run


@pytest.mark.slow
def test_wait_that_times_out_returns_the_run_as_it_is_then(client: httpx.Client) -> None:
    response = client.post("/api/tasks/sleeper/run", params={"wait": "true", "wait_timeout": "1"})

    assert response.status_code == 201
    assert response.headers["x-runwarden-wait"] == "timeout"
    run = response.json()
    assert run["status"] in ("pending", "running")
    assert client.post(f"/api/tasks/sleeper/runs/{run['id']}/stop").status_code == 200


def test_without_wait_the_answer_has_no_wait_header(client: httpx.Client) -> None:
    response = client.post("/api/tasks/quick/run")

    assert response.status_code == 201
    assert "x-runwarden-wait" not in response.headers
    run_id = response.json()["id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "ended")


@pytest.mark.parametrize("wait_timeout", ["0", "3601", "-5", "soon"])
def test_a_wait_timeout_out_of_range_is_a_422(client: httpx.Client, wait_timeout: str) -> None:
    before = client.get("/api/tasks/quick/runs").json()["total"]

    response = client.post(
        "/api/tasks/quick/run", params={"wait": "true", "wait_timeout": wait_timeout}
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"] == [
        {
            "location": "query.wait_timeout",
            "message": problem["errors"][0]["message"],
            "value": wait_timeout,
        }
    ]
    # The refused request triggered nothing.
    assert client.get("/api/tasks/quick/runs").json()["total"] == before
