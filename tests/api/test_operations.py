"""Deleting runs, the runs summary, /api/info, /metrics and the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters.postgres.embedded import run_coroutine
from tests.support.daemon import module_daemon

CONFIG = """
[scheduler]
timezone = "Europe/Berlin"

[tasks.hello]
run = "echo hello; echo world"

[tasks.broken]
run = "echo oops >&2; exit 3"

[tasks.sleeper]
run = "sleep 30"

[tasks.nightly]
run = "true"
cron = "0 3 * * *"

[services.worker]
run = "sleep 600"
"""

FAILURES = "failed,timeout,crashed,log_overflow"


daemon = module_daemon(CONFIG, "operations")


def finished(client: httpx.Client, task: str) -> dict[str, Any]:
    response = client.post(f"/api/tasks/{task}/run", params={"wait": "true", "wait_timeout": 30})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "ended"
    return run


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    return run_coroutine(lambda: _fetch(url, query, *args))


def test_deleting_an_ended_run_removes_it_and_its_log(
    client: httpx.Client, module_database_url: str
) -> None:
    run = finished(client, "hello")
    log_rows = "SELECT run_id FROM run_logs WHERE run_id = $1"
    assert fetch(module_database_url, log_rows, run["id"])

    response = client.delete(f"/api/tasks/hello/runs/{run['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert fetch(module_database_url, log_rows, run["id"]) == []
    meta = "SELECT run_id FROM run_log_meta WHERE run_id = $1"
    assert fetch(module_database_url, meta, run["id"]) == []


def test_deleting_a_running_run_is_a_409_and_keeps_it(client: httpx.Client) -> None:
    run = client.post("/api/tasks/sleeper/run").json()
    try:
        response = client.delete(f"/api/tasks/sleeper/runs/{run['id']}")

        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/problem+json")
        assert client.get(f"/api/runs/{run['id']}").status_code == 200
    finally:
        client.post(f"/api/tasks/sleeper/runs/{run['id']}/stop")


def test_deleting_a_run_of_another_task_or_no_run_is_a_404(client: httpx.Client) -> None:
    run = finished(client, "hello")

    assert client.delete(f"/api/tasks/broken/runs/{run['id']}").status_code == 404
    assert client.delete("/api/tasks/hello/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404
    assert client.get(f"/api/runs/{run['id']}").status_code == 200


def test_the_summary_counts_what_the_listing_counts(
    client: httpx.Client, module_database_url: str
) -> None:
    finished(client, "broken")
    finished(client, "hello")
    # A failure that ended later than any run the daemon makes in this test.
    fetch(
        module_database_url,
        "INSERT INTO runs (id, task_name, status, end_reason, exit_code, start_at, end_at, "
        "created_at, triggered_by) VALUES ($1, 'gone-task', 'ended', 'timeout', -1, $2, $3, "
        "$2, 'cron') RETURNING id",
        "01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        datetime(2099, 1, 1, tzinfo=UTC),
        datetime(2099, 1, 1, 0, 5, tzinfo=UTC),
    )

    summary = client.get("/api/runs/summary").json()
    assert client.get(summary["$schema"]).status_code == 200

    def total(**params: str) -> int:
        return int(client.get("/api/runs", params=params).json()["total"])

    assert summary["$schema"].endswith("/schemas/RunsSummaryBody.json")
    assert summary["total"] == total()
    assert summary["success"] == total(status="success")
    assert summary["failed"] == total(status=FAILURES)
    assert summary["failed"] >= 2
    assert summary["last_failure"]["id"] == "01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    assert summary["last_failure"]["end_reason"] == "timeout"


def test_info_names_the_version_zone_scheduler_and_tasks(client: httpx.Client) -> None:
    info = client.get("/api/info").json()

    assert info["$schema"].endswith("/schemas/Info.json")
    assert info["timezone"] == "Europe/Berlin"
    assert info["version"]
    assert info["scheduler_alive"] is True
    assert info["uptime_seconds"] >= 0
    assert info["queued_runs"] >= 0
    briefs = {t["name"]: t for t in info["tasks"]}
    assert sorted(briefs) == ["broken", "hello", "nightly", "sleeper", "worker"]
    assert briefs["nightly"]["cron"] == "0 3 * * *"
    assert briefs["nightly"]["next_run_at"].endswith("Z")
    assert "cron" not in briefs["hello"]
    assert "next_run_at" not in briefs["hello"]
    assert briefs["worker"]["kind"] == "service"
    for schema in (info["$schema"], briefs["hello"]["$schema"]):
        assert client.get(schema).status_code == 200


def _samples(client: httpx.Client) -> dict[str, list[Any]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_metrics_count_runs_from_the_database_and_time_them(client: httpx.Client) -> None:
    finished(client, "broken")
    failed = int(client.get("/api/tasks/broken/runs", params={"status": "failed"}).json()["total"])

    samples = _samples(client)

    runs = {
        (s.labels["task"], s.labels["status"], s.labels["end_reason"]): s.value
        for s in samples["runwarden_runs"]
    }
    assert runs[("broken", "ended", "failed")] == failed
    assert runs[("worker", "running", "")] == 1
    durations = {
        (s.labels["task"], s.labels["end_reason"]): s.value
        for s in samples["runwarden_run_duration_seconds_count"]
    }
    assert durations[("broken", "failed")] >= 1
    queued = {s.labels["task"]: s.value for s in samples["runwarden_queued_runs"]}
    assert queued["hello"] == 0
    assert samples["runwarden_scheduler_up"][0].value == 1


def test_metrics_time_requests_by_route_template(client: httpx.Client) -> None:
    run = finished(client, "hello")
    assert client.get(f"/api/tasks/hello/runs/{run['id']}").status_code == 200

    samples = _samples(client)

    routes = {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for s in samples["runwarden_http_request_duration_seconds_count"]
    }
    assert ("POST", "/api/tasks/{taskName}/run", "201") in routes
    assert ("GET", "/api/tasks/{taskName}/runs/{runId}", "200") in routes
    assert not any(run["id"] in route for _, route, _ in routes)


def test_every_api_operation_documents_its_problems(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()

    assert document["openapi"].startswith("3.1")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            where = f"{method.upper()} {path}"
            assert operation.get("operationId"), where
            assert operation.get("summary"), where
            responses = operation["responses"]
            statuses = ["401", "429"] if path.startswith("/api") else []
            if any(p["in"] in ("path", "query") for p in operation.get("parameters", [])):
                statuses.append("422")
            for status in statuses:
                assert status in responses, f"{where} does not declare {status}"
            for status, response in responses.items():
                # /ready answers in plain text, for load balancers.
                if status.startswith(("4", "5")) and path != "/ready":
                    media = list(response.get("content", {}))
                    assert media == ["application/problem+json"], f"{where} {status}: {media}"


def test_the_trigger_documents_its_wait_parameters(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/tasks/{taskName}/run"]["post"]

    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert parameters["wait_timeout"]["minimum"] == 1
    assert parameters["wait_timeout"]["maximum"] == 3600
    assert parameters["wait_timeout"]["default"] == 300
    assert parameters["wait"]["type"] == "boolean"
    assert {"200", "201"} <= set(operation["responses"])
    assert operation["requestBody"]["required"] is False
    assert "X-Runwarden-Wait" in operation["responses"]["201"]["headers"]
