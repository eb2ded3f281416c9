"""``/ui/tasks/{name}``: config, duration chart and the run history's URL state."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonProcess, module_daemon
from tests.ui.history import history_rows, insert_runs
from tests.ui.html import page_checks, rows, soup, text

CONFIG = """
[tasks.hist]
run = "echo ${HIST_WORD:-plain}"
description = "A task with a long history"
env = { TOKEN = "hunter2-very-secret", REGION = "eu-west-9" }
timeout = "90s"
"""

daemon = module_daemon(CONFIG, "ui_task")
COUNT = 120


@pytest.fixture(scope="module")
def history(daemon: DaemonProcess, module_database_url: str) -> list[dict[str, Any]]:
    made = history_rows("hist", COUNT)
    insert_runs(module_database_url, made)
    return made


def ids(doc: Any) -> list[str]:
    return [text(tr.find("td").find("a")) for tr in rows(doc.select_one("table.runs"))]


def test_the_task_page_shows_its_config_without_env_values(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    doc = page_checks(client.get("/ui/tasks/hist"))

    assert text(doc.find("h1")) == "hist"
    config = text(doc.select_one(".config-list"))
    assert "A task with a long history" in config
    assert "REGION, TOKEN (values hidden)" in config
    assert "90 s" in config
    assert "hunter2-very-secret" not in doc.decode()
    assert "eu-west-9" not in doc.decode()
    assert [f["action"] for f in doc.select(".actions form")] == [
        "/ui/tasks/hist/run",
        "/ui/tasks/hist/stop",
    ]


def test_the_chart_has_a_bar_per_run_of_the_last_50_linking_to_it(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    doc = page_checks(client.get("/ui/tasks/hist"))

    bars = doc.select("svg.bars a.bar")
    newest = history[-50:]
    assert [a["href"] for a in bars] == [f"/ui/runs/{r['id']}" for r in newest]
    for bar, run in zip(bars, newest, strict=True):
        assert run["id"] in text(bar.find("title"))
        assert run["end_reason"].replace("_", " ") in text(bar.find("title"))
        assert f"o-{run['end_reason']}" in bar["class"]
        assert text(bar.find("text")) in "SFTCX"
    # Longest (119 s) is the full height; the letter row and hatching mark the bad ones.
    heights = [float(a.select_one("rect.fill")["height"]) for a in bars]
    assert heights[-1] == 120.0
    assert heights[0] == pytest.approx(120 * 70 / 119, abs=0.01)
    hatched = [a for a in bars if a.find("rect", attrs={"fill": "url(#hatch)"})]
    assert len(hatched) == sum(r["end_reason"] in ("failed", "timeout", "crashed") for r in newest)
    assert doc.select_one("svg.bars")["role"] == "group"  # of links, one a run


def test_the_history_pages_with_an_exact_total_and_links(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    doc = page_checks(client.get("/ui/tasks/hist", params={"limit": 20, "offset": 20}))

    newest_first = [r["id"] for r in reversed(history)]
    assert ids(doc) == newest_first[20:40]
    pager = doc.select_one("nav.pager")
    assert text(pager.select_one(".count")) == "21\u201340 of 120"
    assert pager.find("a", rel="prev")["href"] == "/ui/tasks/hist?limit=20"
    assert pager.find("a", rel="next")["href"] == "/ui/tasks/hist?limit=20&offset=40"
    last = page_checks(client.get("/ui/tasks/hist", params={"limit": 50, "offset": 100}))
    assert text(last.select_one("nav.pager .count")) == "101\u2013120 of 120"
    assert last.select_one("nav.pager").find("a", rel="next") is None


def test_the_status_filter_changes_the_rows_and_the_total(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    doc = page_checks(client.get("/ui/tasks/hist", params={"status": "failed,timeout"}))

    expected = [r["id"] for r in reversed(history) if r["end_reason"] in ("failed", "timeout")]
    assert ids(doc) == expected
    assert text(doc.select_one("nav.pager .count")) == f"1\u2013{len(expected)} of {len(expected)}"
    assert doc.select_one("#f-status option[selected]") is None  # not one of the choices
    one = page_checks(client.get("/ui/tasks/hist", params={"status": "crashed"}))
    assert one.select_one("#f-status option[selected]")["value"] == "crashed"


def test_sort_headers_are_links_with_aria_sort(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    default = page_checks(client.get("/ui/tasks/hist"))
    headers = {text(th.find("a")).rstrip(" ▲▼"): th for th in default.select("th[aria-sort]")}
    assert headers["Created"]["aria-sort"] == "descending"
    assert headers["Duration"]["aria-sort"] == "none"
    link = headers["Duration"].find("a")["href"]
    assert link == "/ui/tasks/hist?sort_field=duration&sort_direction=desc"

    by_duration = page_checks(client.get(link))
    assert ids(by_duration)[0] == history[-1]["id"]
    header = by_duration.select_one("th[aria-sort='descending']")
    assert "Duration" in text(header)
    flipped = header.find("a")["href"]
    assert flipped == "/ui/tasks/hist?sort_field=duration&sort_direction=asc"
    ascending = page_checks(client.get(flipped))
    assert ids(ascending)[0] == history[0]["id"]
    assert "Duration" in text(ascending.select_one("th[aria-sort='ascending']"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "exploded"}, "unknown status 'exploded'"),
        ({"offset": "-5"}, "offset must be between 0"),
        ({"limit": "lots"}, "limit must be a whole number"),
        ({"sort_field": "color"}, "sort_field 'color' is not one of"),
    ],
)
def test_a_bad_filter_is_a_400_page_that_says_what(
    client: httpx.Client, params: dict[str, str], message: str
) -> None:
    doc = page_checks(client.get("/ui/tasks/hist", params=params), 400)

    assert message in text(doc.find(attrs={"role": "alert"}))


def test_an_unknown_task_is_a_404_page_naming_it(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/tasks/no-such-task"), 404)

    assert "no-such-task" in text(doc.find("main"))


def test_the_fragment_is_the_chart_and_the_history_only(
    client: httpx.Client, history: list[dict[str, Any]]
) -> None:
    response = client.get("/ui/tasks/hist?status=failed", headers={"HX-Request": "true"})

    doc = soup(response)
    assert doc.find("h1") is None
    live = doc.find(id="task-live")
    assert live["hx-get"] == "/ui/tasks/hist?status=failed"
    assert "data-live" in live.attrs
    assert len(doc.select("svg.bars a.bar")) == 50
    assert len(ids(doc)) == sum(r["end_reason"] == "failed" for r in history)
