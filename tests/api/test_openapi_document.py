"""What the OpenAPI document promises beyond each route's own declarations: statuses the
middleware and the HTTP parser answer, links between operations, the shape of SSE events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ulid import ULID

from tests.support.daemon import DaemonProcess, module_daemon

daemon = module_daemon('[tasks.alpha]\nrun = "echo alpha"\n', "openapi-document")

METHODS = ("get", "post", "put", "patch", "delete")
ON_A_RUN = {
    "get-run",
    "get-task-run",
    "get-run-log",
    "get-run-log-raw",
    "stream-run-log",
    "stop-run",
    "delete-run",
}


@pytest.fixture(scope="module")
def document(daemon: DaemonProcess) -> dict[str, Any]:
    return httpx.get(f"{daemon.url}/openapi.json", timeout=30).json()  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """operationId -> (path, operation)."""
    return {
        operation["operationId"]: (path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_operation_documents_the_head_limits_and_api_ones_the_auth_problems(
    document: dict[str, Any],
) -> None:
    for name, (path, operation) in operations(document).items():
        statuses = {"414", "431"} | ({"401", "429"} if path.startswith("/api") else set())
        assert statuses <= set(operation["responses"]), name


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("stop-service", {"200", "400", "404", "422", "503"}),
        ("restart-service", {"200", "400", "404", "422", "503"}),
        ("get-run-log", {"200", "404", "422", "503"}),
        ("get-run-log-raw", {"200", "404", "422", "503"}),
        ("stream-run-log", {"200", "404", "422", "503"}),
    ],
)
def test_operations_document_what_they_answer(
    document: dict[str, Any], name: str, statuses: set[str]
) -> None:
    _, operation = operations(document)[name]
    assert statuses <= set(operation["responses"])


@pytest.mark.parametrize(
    ("source", "status", "pointer"),
    [
        ("trigger-task", "201", ""),
        ("trigger-task", "200", ""),
        ("list-runs", "200", "/runs/0"),
        ("list-task-runs", "200", "/runs/0"),
    ],
)
def test_responses_that_carry_a_run_link_to_every_operation_on_it(
    document: dict[str, Any], source: str, status: str, pointer: str
) -> None:
    links = operations(document)[source][1]["responses"][status]["links"]

    assert {link["operationId"] for link in links.values()} == ON_A_RUN
    for link in links.values():
        expected = {"runId": f"$response.body#{pointer}/id"}
        if link["operationId"] != "get-run":
            expected["taskName"] = f"$response.body#{pointer}/task_name"
        assert link["parameters"] == expected


def test_each_link_target_takes_exactly_the_parameters_the_link_fills(
    document: dict[str, Any],
) -> None:
    found = operations(document)
    for name in ON_A_RUN:
        path, operation = found[name]
        in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert in_path == ({"runId"} if name == "get-run" else {"runId", "taskName"}), path


def test_event_streams_describe_each_event_and_the_json_it_carries(
    document: dict[str, Any],
) -> None:
    found = operations(document)
    for name, events in [
        ("stream-run-log", {"line": "LogLine", "done": "LogStreamDone"}),
        ("stream-run-events", {"run.created": "Run", "run.deleted": "Run"}),
    ]:
        schema = found[name][1]["responses"]["200"]["content"]["text/event-stream"]["schema"]
        described = {
            variant["properties"]["event"]["const"]: variant["properties"]["data"]
            for variant in schema["oneOf"]
        }
        for event, data_type in events.items():
            data = described[event]
            assert data["contentMediaType"] == "application/json"
            assert data["contentSchema"] == {"$ref": f"#/components/schemas/{data_type}"}
            assert data_type in document["components"]["schemas"]


def test_the_schema_names_are_listed_and_each_is_served(
    document: dict[str, Any], daemon: DaemonProcess
) -> None:
    [parameter] = operations(document)["get-schema"][1]["parameters"]
    names = parameter["schema"]["enum"]
    assert "Run.json" in names
    for name in names:
        assert httpx.get(f"{daemon.url}/schemas/{name}", timeout=10).status_code == 200


def test_options_lists_every_method_of_a_path_with_several(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        response = client.options(f"/api/tasks/alpha/runs/{ULID()}")
    assert response.status_code == 204
    assert sorted(response.headers["allow"].split(", ")) == ["DELETE", "GET", "OPTIONS"]
