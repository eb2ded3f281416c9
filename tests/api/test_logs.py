"""A run's log over HTTP: a page of lines and the raw download, on a real daemon."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.logs_support import (
    daemon_fixture,
    log_url,
    seq_run_fixture,
    sse_events,
    trigger,
    wait_ended,
)
from tests.support.daemon import wait_for

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

# The module's daemon and finished run: fixtures shared with the other log tests.
__all__ = ["daemon_fixture", "seq_run_fixture"]


def test_a_page_defaults_to_the_last_1000_lines(client: httpx.Client, seq_run: str) -> None:
    response = client.get(log_url("seq", seq_run))
    assert response.status_code == 200
    page = response.json()
    assert page["$schema"].endswith("/schemas/LogPage.json")
    assert [line["n"] for line in page["lines"]] == list(range(1500, 2500))
    assert [line["text"] for line in page["lines"]] == [str(i) for i in range(1501, 2501)]
    assert {line["stream"] for line in page["lines"]} == {"stdout"}
    assert all(TIMESTAMP.match(line["ts"]) for line in page["lines"])
    assert page["first_available"] == 0
    assert page["total_lines"] == 2500
    assert page["truncated"] is False
    assert page["finalized"] is True
    assert client.get("/schemas/LogPage.json").status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from": -5}, list(range(2495, 2500))),
        ({"from": -5000, "limit": 3}, [0, 1, 2]),
        ({"from": 10, "limit": 3}, [10, 11, 12]),
        ({"from": 2498}, [2498, 2499]),
        ({"from": 2500}, []),
        ({"from": 10**9}, []),
        ({"from": 0, "limit": 10000}, list(range(2500))),
    ],
)
def test_from_and_limit_choose_the_window(
    client: httpx.Client, seq_run: str, params: dict[str, int], expected: list[int]
) -> None:
    page = client.get(log_url("seq", seq_run), params=params).json()
    assert [line["n"] for line in page["lines"]] == expected
    assert page["total_lines"] == 2500


@pytest.mark.parametrize(
    ("params", "location", "value"),
    [
        ({"limit": 0}, "query.limit", "0"),
        ({"limit": 10001}, "query.limit", "10001"),
        ({"limit": "many"}, "query.limit", "many"),
        ({"from": "start"}, "query.from", "start"),
        ({"from": 2**53}, "query.from", str(2**53)),
        ({"from": "-1e3"}, "query.from", "-1e3"),
        ({"limit": "1.0"}, "query.limit", "1.0"),
    ],
)
def test_invalid_page_parameters_are_422(
    client: httpx.Client, seq_run: str, params: dict[str, Any], location: str, value: str
) -> None:
    response = client.get(log_url("seq", seq_run), params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] == "validation failed"
    assert [(e["location"], e["value"]) for e in problem["errors"]] == [(location, value)]


def test_an_invalid_last_event_id_is_422(client: httpx.Client, seq_run: str) -> None:
    response = client.get(log_url("seq", seq_run, "/stream"), headers={"Last-Event-ID": "latest"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["location"], error["value"]) == ("header.Last-Event-ID", "latest")


@pytest.mark.parametrize("tail", ["", "/raw", "/stream"])
def test_an_unknown_run_or_a_run_of_another_task_is_404(
    client: httpx.Client, seq_run: str, tail: str
) -> None:
    for url in (
        log_url("other", seq_run, tail),
        log_url("seq", "01ARZ3NDEKTSV4RRFFQ69G5FAV", tail),
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["title"] == "Not Found"


def test_a_running_run_is_finalized_only_once_it_ended(client: httpx.Client) -> None:
    run_id = trigger(client, "waiting")
    url = log_url("waiting", run_id)
    page = wait_for(lambda: (p := client.get(url).json())["lines"] and p)
    assert page["lines"][0]["text"] == "started"
    assert page["finalized"] is False
    assert client.post(f"/api/tasks/waiting/runs/{run_id}/stop").status_code == 200
    wait_ended(client, run_id)
    assert client.get(url).json()["finalized"] is True


def test_the_raw_download_is_every_line_as_text(client: httpx.Client, seq_run: str) -> None:
    response = client.get(log_url("seq", seq_run, "/raw"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"] == f'inline; filename="{seq_run}.log"'
    page = client.get(log_url("seq", seq_run), params={"from": 0, "limit": 10000}).json()
    assert response.text == "".join(line["text"] + "\n" for line in page["lines"])
    assert response.text == "".join(f"{i}\n" for i in range(1, 2501))


def test_a_trimmed_log_starts_at_the_first_available_line(client: httpx.Client) -> None:
    run_id = trigger(client, "trimmed")
    wait_ended(client, run_id)
    page = client.get(log_url("trimmed", run_id), params={"from": 0}).json()
    assert page["truncated"] is True
    assert page["first_available"] > 0
    assert page["lines"][0]["n"] == page["first_available"]
    raw = client.get(log_url("trimmed", run_id, "/raw")).text.splitlines()
    assert raw[0] == page["lines"][0]["text"]
    assert len(raw) == page["total_lines"] - page["first_available"]
    with client.stream("GET", log_url("trimmed", run_id, "/stream")) as response:
        first = next(sse_events(response))
    assert int(first["id"]) == page["first_available"]


def test_the_openapi_document_describes_the_log_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    base = "/api/tasks/{taskName}/runs/{runId}/log"
    page, raw, stream = (paths[base + tail]["get"] for tail in ("", "/raw", "/stream"))
    assert [op["operationId"] for op in (page, raw, stream)] == [
        "get-run-log",
        "get-run-log-raw",
        "stream-run-log",
    ]
    params = {p["name"]: p["schema"] for p in page["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 10000)
    assert (params["limit"]["default"], params["from"]["default"]) == (1000, -1000)
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}
    for op, statuses in ((page, {"404", "422"}), (raw, {"404", "422"}), (stream, {"503"})):
        for status in statuses:
            assert "application/problem+json" in op["responses"][status]["content"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "text/plain" in raw["responses"]["200"]["content"]
