"""``/ui/runs``: every task's runs in the shared table, filters, bulk stop and delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonProcess, module_daemon, wait_for
from tests.ui.history import history_rows, insert_runs
from tests.ui.html import page_checks, rows, soup, text

CONFIG = """
[tasks.alpha]
run = "true"

[tasks.omega]
run = "true"

[tasks.sleeper]
run = "sleep 30"
"""

daemon = module_daemon(CONFIG, "ui_runs")


@pytest.fixture(scope="module")
def history(daemon: DaemonProcess, module_database_url: str) -> dict[str, list[dict[str, Any]]]:
    made = {"alpha": history_rows("alpha", 30), "omega": history_rows("omega", 7)}
    insert_runs(module_database_url, made["alpha"] + made["omega"])
    return made


def table_ids(doc: Any) -> list[str]:
    return [str(box["value"]) for box in doc.select("table.runs input[name=run]")]


def test_the_runs_page_lists_every_tasks_runs_with_selection_boxes(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    doc = page_checks(client.get("/ui/runs", params={"limit": 20}))

    assert text(doc.find("h1")) == "Runs"
    everything = sorted(history["alpha"] + history["omega"], key=lambda r: r["id"])
    assert table_ids(doc) == [r["id"] for r in reversed(everything)][:20]
    assert text(doc.select_one("nav.pager .count")) == "1\u201320 of 37"
    first = rows(doc.select_one("table.runs"))[0]
    cells = first.find_all("td")
    assert cells[1].find("a")["href"] == f"/ui/runs/{everything[-1]['id']}"
    assert cells[2].find("a")["href"] == f"/ui/tasks/{everything[-1]['task_name']}"
    assert first.find("time")["datetime"].endswith("Z")
    form = doc.select_one("form.bulk")
    assert form["method"] == "post"
    assert form["action"] == "/ui/runs/bulk"
    assert [b["value"] for b in form.select("button[name=action]")] == ["stop", "delete"]
    for box in form.select("input[name=run]"):
        assert box.get("aria-label", "").startswith("Select run ")


def test_search_and_status_filter_the_rows_and_the_total(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    doc = page_checks(client.get("/ui/runs", params={"search": "OMEG", "status": "success"}))

    expected = [r["id"] for r in reversed(history["omega"]) if r["end_reason"] == "success"]
    assert table_ids(doc) == expected
    assert text(doc.select_one("nav.pager .count")) == f"1\u2013{len(expected)} of {len(expected)}"
    # The header's search box shows the search; sort links keep the filters.
    assert doc.find(id="search")["value"] == "OMEG"
    link = doc.select_one("th[aria-sort] a")["href"]
    assert "search=OMEG" in link
    assert "status=success" in link


def test_the_task_filter_keeps_one_tasks_runs_and_is_carried_in_links(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    doc = page_checks(client.get("/ui/runs", params={"task_name": "omega", "limit": 5}))

    omega = [r["id"] for r in reversed(history["omega"])]
    total = client.get("/api/runs", params={"task_name": "omega"}).json()["total"]
    assert table_ids(doc) == omega[:5]
    assert text(doc.select_one("nav.pager .count")) == f"1\u20135 of {total}"
    assert doc.select_one("#f-task option[selected]")["value"] == "omega"
    assert [o["value"] for o in doc.select("#f-task option")] == ["", "alpha", "omega", "sleeper"]
    assert "task_name=omega" in doc.select_one("nav.pager a[rel=next]")["href"]
    assert "task_name=omega" in doc.select_one("th[aria-sort] a")["href"]


def test_a_bad_task_name_is_a_400_with_a_message(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/runs", params={"task_name": "no/slash"}), 400)

    assert "task_name 'no/slash' is not a task name" in text(doc.find(attrs={"role": "alert"}))


def test_a_bad_offset_is_a_400_with_a_message(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/runs", params={"offset": "x"}), 400)

    assert "offset must be a whole number" in text(doc.find(attrs={"role": "alert"}))


def test_bulk_delete_deletes_the_selected_runs_and_says_so(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    chosen = [history["omega"][0]["id"], history["omega"][1]["id"]]

    response = client.post(
        "/ui/runs/bulk",
        data={"action": "delete", "run": chosen, "next": "/ui/runs?search=omega"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs?search=omega"
    for run_id in chosen:
        assert client.get(f"/api/runs/{run_id}").status_code == 404
    doc = page_checks(client.get("/ui/runs?search=omega"))
    assert text(doc.select_one(".notice")) == "2 run(s) deleted"
    assert text(doc.select_one("nav.pager .count")) == "1\u20135 of 5"


def test_bulk_stop_stops_a_running_run_and_names_the_ones_already_ended(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    run = client.post("/api/tasks/sleeper/run").json()
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["status"] == "running", 10)
    ended = history["alpha"][0]["id"]

    response = client.post("/ui/runs/bulk", data={"action": "stop", "run": [run["id"], ended]})

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs"
    stopped = client.get(f"/api/runs/{run['id']}").json()
    assert stopped["end_reason"] == "stopped"
    notice = text(page_checks(client.get("/ui/runs")).select_one(".notice"))
    assert notice == f"1 run(s) stopped; not done: run {ended} already ended"


def test_bulk_without_a_selection_says_so(client: httpx.Client) -> None:
    response = client.post("/ui/runs/bulk", data={"action": "delete"})

    assert response.status_code == 303
    assert text(page_checks(client.get("/ui/runs")).select_one(".notice")) == "no runs selected"


def test_the_live_fragment_is_the_filtered_table_with_its_count(
    client: httpx.Client, history: dict[str, list[dict[str, Any]]]
) -> None:
    response = client.get("/ui/runs?search=alpha", headers={"HX-Request": "true"})

    doc = soup(response)
    live = doc.find(id="runs-live")
    assert live["hx-get"] == "/ui/runs?search=alpha"
    assert "runs-changed from:body" in live["hx-trigger"]
    assert "data-keep-while-selected" in live.attrs
    assert text(live.select_one(".live-line")).startswith("30 run(s) match")
    assert len(live.select("tbody tr")) == 30
    assert doc.find("h1") is None  # the fragment alone, not the page
