"""GET /api/tasks/{taskName}/runs over real HTTP, exactly as the seed page documents it.

The runs are written straight into PostgreSQL, and every expected order and filter result
is computed here, independently of the daemon's code.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from ulid import ULID

pytestmark = pytest.mark.usefixtures("seeded_runs")

PHASES = ["pending", "running", "ended"]
REASONS = ["success", "failed", "stopped", "timeout", "crashed", "skipped", "log_overflow"]
SORT_FIELDS = ["task_name", "status", "start_at", "exit_code", "duration", "created_at", ""]
DIRECTIONS = ["asc", "desc", ""]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def make_runs() -> list[dict[str, Any]]:
    """A varied history with deliberate ties in every sort key."""
    rng = random.Random(20261129)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    runs = []
    for i, task in enumerate(["alpha"] * 70 + ["beta_1"] * 10 + ["betax1"] * 10):
        created = base + timedelta(seconds=rng.choice([0, 60, 120]) + i // 3 * 600)
        phase = PHASES[i % 3] if i % 5 else "ended"
        row: dict[str, Any] = {
            "id": str(ULID.from_datetime(created)),
            "task_name": task,
            "status": phase,
            "end_reason": None,
            "exit_code": 0,
            "start_at": None,
            "end_at": None,
            "created_at": created,
            # One cron run per group of three: a tick is recorded once per task.
            "triggered_by": "cron" if i % 3 == 0 else rng.choice(["api", "cloud"]),
            "replica_index": 0,
            "retry_attempt": 0,
        }
        if phase != "pending":
            row["start_at"] = created + timedelta(seconds=rng.choice([0, 1, 2]))
        if phase == "ended":
            reason = REASONS[i % 7]
            row["end_reason"] = reason
            if reason == "skipped":
                row["start_at"] = None
                row["exit_code"] = -1
            else:
                row["exit_code"] = {"success": 0, "crashed": -2}.get(reason, rng.choice([1, 3, -1]))
                row["end_at"] = row["start_at"] + timedelta(seconds=rng.choice([1, 5, 5, 30]))
        runs.append(row)
    return runs


def sort_key(run: dict[str, Any], field: str) -> Any:
    if field == "task_name":
        return run["task_name"]
    if field == "status":
        return run["status"]
    if field == "start_at":
        return run["start_at"] or run["created_at"]
    if field == "exit_code":
        return run["exit_code"]
    if field == "duration":
        if run["status"] == "ended" and run["start_at"] and run["end_at"]:
            return (run["end_at"] - run["start_at"]).total_seconds()
        return 0.0
    return run["created_at"]


def expected_ids(runs: list[dict[str, Any]], field: str, direction: str) -> list[str]:
    desc = direction != "asc"
    ordered = sorted(
        runs, key=lambda r: (sort_key(r, field or "created_at"), r["id"]), reverse=desc
    )
    return [r["id"] for r in ordered]


def fetch_all(client: httpx.Client, path: str, page: int, **params: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    totals = set()
    offset = 0
    while True:
        body = client.get(path, params={**params, "limit": page, "offset": offset}).json()
        totals.add(body["total"])
        ids += [r["id"] for r in body["runs"]]
        if len(body["runs"]) < page:
            break
        offset += page
    assert len(totals) == 1, "total must not change between pages"
    return ids, totals.pop()


def of_task(runs: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["task_name"] == task]


@pytest.mark.parametrize("field", SORT_FIELDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_sort_field_and_direction_pages_through_the_expected_order(
    client: httpx.Client, seeded_runs: list[dict[str, Any]], field: str, direction: str
) -> None:
    ids, total = fetch_all(
        client, "/api/tasks/alpha/runs", 7, sort_field=field, sort_direction=direction
    )
    expected = expected_ids(of_task(seeded_runs, "alpha"), field, direction)
    assert ids == expected
    assert total == len(expected) == len(set(ids))


def test_the_default_order_is_created_at_descending_with_fifty_per_page(
    client: httpx.Client, seeded_runs: list[dict[str, Any]]
) -> None:
    body = client.get("/api/tasks/alpha/runs").json()
    expected = expected_ids(of_task(seeded_runs, "alpha"), "created_at", "desc")
    assert [r["id"] for r in body["runs"]] == expected[:50]
    assert body["total"] == 70


def test_limit_and_offset_windows_neither_overlap_nor_leave_gaps(
    client: httpx.Client, seeded_runs: list[dict[str, Any]]
) -> None:
    expected = expected_ids(of_task(seeded_runs, "alpha"), "exit_code", "asc")
    seen: list[str] = []
    for offset in range(0, 70, 9):
        body = client.get(
            "/api/tasks/alpha/runs",
            params={
                "limit": 9,
                "offset": offset,
                "sort_field": "exit_code",
                "sort_direction": "asc",
            },
        ).json()
        assert [r["id"] for r in body["runs"]] == expected[offset : offset + 9]
        seen += [r["id"] for r in body["runs"]]
    assert seen == expected
    past_end = client.get("/api/tasks/alpha/runs", params={"offset": 1000}).json()
    assert past_end == {**past_end, "runs": [], "total": 70}


@pytest.mark.parametrize(
    "status", [*PHASES, *REASONS, "failed,timeout", "running, success", "pending,ended"]
)
def test_status_filters_by_phase_end_reason_or_a_list_of_either(
    client: httpx.Client, seeded_runs: list[dict[str, Any]], status: str
) -> None:
    wanted = {s.strip() for s in status.split(",")}
    expected = [
        r
        for r in of_task(seeded_runs, "alpha")
        if r["status"] in wanted or r["end_reason"] in wanted
    ]
    ids, total = fetch_all(client, "/api/tasks/alpha/runs", 1000, status=status)
    assert sorted(ids) == sorted(r["id"] for r in expected)
    assert total == len(expected) > 0
    body = client.get("/api/tasks/alpha/runs", params={"status": status, "limit": 1}).json()
    assert body["total"] == len(expected)


def test_search_matches_an_id_fragment_case_insensitively(
    client: httpx.Client, seeded_runs: list[dict[str, Any]]
) -> None:
    target = seeded_runs[42]["id"]
    fragment = target[-6:-2].lower()
    expected = [
        r["id"]
        for r in seeded_runs
        if fragment in r["id"].lower() or fragment in r["task_name"].lower()
    ]
    ids, total = fetch_all(client, "/api/runs", 1000, search=fragment)
    assert target in ids
    assert sorted(ids) == sorted(expected)
    assert total == len(expected)


def test_search_matches_a_task_name_fragment(
    client: httpx.Client, seeded_runs: list[dict[str, Any]]
) -> None:
    ids, total = fetch_all(client, "/api/runs", 1000, search="ETA")
    expected = [r["id"] for r in seeded_runs if "eta" in r["task_name"] or "eta" in r["id"].lower()]
    assert sorted(ids) == sorted(expected)
    assert total == len(expected) >= 20


@pytest.mark.parametrize(("search", "count"), [("a_1", 10), ("a%1", 0), ("_", 10), ("%", 0)])
def test_search_treats_percent_and_underscore_literally(
    client: httpx.Client, search: str, count: int
) -> None:
    body = client.get("/api/runs", params={"search": search, "limit": 1000}).json()
    assert body["total"] == count
    assert all(search in r["task_name"] for r in body["runs"])


def test_the_path_task_name_wins_over_the_task_name_filter(client: httpx.Client) -> None:
    body = client.get("/api/tasks/alpha/runs", params={"task_name": "beta_1"}).json()
    assert body["total"] == 70
    assert {r["task_name"] for r in body["runs"]} == {"alpha"}


def test_task_name_filters_the_all_runs_listing(client: httpx.Client) -> None:
    body = client.get("/api/runs", params={"task_name": "beta_1", "limit": 1000}).json()
    assert body["total"] == 10
    assert {r["task_name"] for r in body["runs"]} == {"beta_1"}


def test_a_task_with_no_runs_gives_an_empty_page(client: httpx.Client) -> None:
    response = client.get("/api/tasks/never-configured/runs")
    assert response.status_code == 200
    assert response.json()["runs"] == []
    assert response.json()["total"] == 0


def test_runs_carry_schema_urls_and_omit_fields_without_values(
    client: httpx.Client, seeded_runs: list[dict[str, Any]]
) -> None:
    response = client.get("/api/tasks/alpha/runs", params={"limit": 1000})
    body = response.json()
    base = str(client.base_url).rstrip("/")
    assert response.headers["content-type"].startswith("application/json")
    assert body["$schema"] == f"{base}/schemas/RunsResponseBody.json"
    by_id = {r["id"]: r for r in seeded_runs}
    for run in body["runs"]:
        seeded = by_id[run["id"]]
        assert run["$schema"] == f"{base}/schemas/Run.json"
        assert None not in run.values()
        assert ("end_reason" in run) == (seeded["status"] == "ended")
        assert ("start_at" in run) == (seeded["start_at"] is not None)
        assert ("end_at" in run) == (seeded["end_at"] is not None)
        for key in ("created_at", "start_at", "end_at"):
            if key in run:
                assert TS.match(run[key]), run[key]
        assert run["created_at"] == seeded["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert run["exit_code"] == seeded["exit_code"]
        assert run["triggered_by"] == seeded["triggered_by"]
        assert (run["replica_index"], run["retry_attempt"]) == (0, 0)


def test_the_schema_urls_serve_json_schemas(client: httpx.Client) -> None:
    for name in ("RunsResponseBody", "Run", "ErrorModel"):
        response = client.get(f"/schemas/{name}.json")
        assert response.status_code == 200
        schema = response.json()
        assert name in schema["$defs"]
    run_schema = client.get("/schemas/Run.json").json()["$defs"]["Run"]
    assert sorted(run_schema["properties"]["status"]["enum"]) == sorted(PHASES)
    assert sorted(run_schema["properties"]["end_reason"]["enum"]) == sorted(REASONS)
    assert client.get("/schemas/Nope.json").status_code == 404


BAD_INPUTS = [
    ("/api/tasks/alpha/runs?limit=0", "query.limit", "0"),
    ("/api/tasks/alpha/runs?limit=1001", "query.limit", "1001"),
    ("/api/tasks/alpha/runs?limit=ten", "query.limit", "ten"),
    ("/api/tasks/alpha/runs?offset=-1", "query.offset", "-1"),
    ("/api/tasks/alpha/runs?sort_field=name", "query.sort_field", "name"),
    ("/api/tasks/alpha/runs?sort_direction=up", "query.sort_direction", "up"),
    ("/api/tasks/alpha/runs?status=done", "query.status", "done"),
    ("/api/tasks/alpha/runs?status=ended,bogus", "query.status", "ended,bogus"),
    ("/api/tasks/alpha/runs?search=" + "x" * 101, "query.search", "x" * 101),
    ("/api/tasks/bad!name/runs", "path.taskName", "bad!name"),
    ("/api/tasks/" + "a" * 101 + "/runs", "path.taskName", "a" * 101),
    ("/api/runs?limit=0", "query.limit", "0"),
]
# Integers are decimal digits, optionally after -: nothing a lax parser would also read.
LOOSE_INTEGERS = ["1e3", "1.0", "+5", " 5", "0x10", "5 ", "1E1", "10.00"]
BAD_INPUTS += [
    (f"{path}?{name}={quote(spelling)}", f"query.{name}", spelling)
    for spelling in LOOSE_INTEGERS
    for path, name in [("/api/runs", "limit"), ("/api/tasks/alpha/runs", "offset")]
]


@pytest.mark.parametrize(("url", "location", "value"), BAD_INPUTS)
def test_every_invalid_input_is_a_422_problem_naming_its_location(
    client: httpx.Client, url: str, location: str, value: str
) -> None:
    response = client.get(url)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["title"] == "Unprocessable Entity"
    assert body["status"] == 422
    assert body["detail"] == "validation failed"
    assert body["type"] == "about:blank"
    assert body["$schema"].endswith("/schemas/ErrorModel.json")
    assert [(e["location"], e["value"]) for e in body["errors"]] == [(location, value)]
    assert body["errors"][0]["message"]


def test_several_invalid_inputs_give_one_error_each(client: httpx.Client) -> None:
    response = client.get(
        "/api/tasks/alpha/runs", params={"limit": "0", "offset": "-5", "sort_field": "x"}
    )
    assert response.status_code == 422
    locations = sorted(e["location"] for e in response.json()["errors"])
    assert locations == ["query.limit", "query.offset", "query.sort_field"]


def test_unknown_routes_and_methods_are_problems_too(client: httpx.Client) -> None:
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["title"] == "Not Found"
    wrong = client.delete("/api/tasks/alpha/runs")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]
    assert wrong.json()["title"] == "Method Not Allowed"


def test_the_openapi_document_describes_the_listing_as_the_seed_does(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/tasks/{taskName}/runs"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params) == {
        "taskName",
        "limit",
        "offset",
        "status",
        "task_name",
        "sort_field",
        "sort_direction",
        "search",
    }
    assert params["taskName"]["in"] == "path"
    assert params["taskName"]["schema"]["pattern"] == "^[a-zA-Z0-9._-]+$"
    assert (
        params["taskName"]["schema"]["minLength"],
        params["taskName"]["schema"]["maxLength"],
    ) == (1, 100)
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 1000, 50)
    assert params["offset"]["schema"]["default"] == 0
    assert params["sort_field"]["schema"]["enum"] == SORT_FIELDS
    assert params["sort_direction"]["schema"]["enum"] == DIRECTIONS
    problem = operation["responses"]["422"]["content"]
    assert "application/problem+json" in problem
