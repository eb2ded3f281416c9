"""The dashboard's pages through HTTP against a real daemon: overview, tasks, nodes."""

from __future__ import annotations

import httpx
import pytest

from tests.support.daemon import DaemonProcess, module_daemon, wait_for
from tests.ui.html import page_checks, rows, soup, text

CONFIG = """
[scheduler]
timezone = "Europe/Paris"

[tasks.quick]
run = "true"

[tasks.broken]
run = "exit 3"

[tasks.sleeper]
run = "sleep 30"

[tasks.nightly]
cron = "0 3 * * *"
run = "true"
env = { API_KEY = "s3cr3t-value-42" }

[tasks.locked]
run = "true"
api_trigger = false

[services.web]
run = "sleep 600"
"""

daemon = module_daemon(CONFIG, "ui_pages")


def trigger(client: httpx.Client, task: str, wait: bool = True) -> dict[str, object]:
    response = client.post(f"/api/tasks/{task}/run", params={"wait": str(wait).lower()})
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def history(daemon: DaemonProcess) -> dict[str, list[str]]:
    """Runs made by triggering: 3 of quick, 2 of broken (failed), 1 sleeper left running."""
    made: dict[str, list[str]] = {"quick": [], "broken": [], "sleeper": []}
    with daemon.client() as client:
        for _ in range(3):
            made["quick"].append(str(trigger(client, "quick")["id"]))
        for _ in range(2):
            made["broken"].append(str(trigger(client, "broken")["id"]))
        made["sleeper"].append(str(trigger(client, "sleeper", wait=False)["id"]))
        wait_for(
            lambda: client.get(f"/api/runs/{made['sleeper'][0]}").json()["status"] == "running",
            10,
        )
    return made


def test_the_overview_shows_the_cluster_counts_attention_running_and_recent_runs(
    client: httpx.Client, history: dict[str, list[str]]
) -> None:
    doc = page_checks(client.get("/ui/"))

    assert text(doc.find("h1")) == "Overview"
    headings = [text(h) for h in doc.find_all("h2")]
    assert headings[:2] == ["Daemon and cluster", "Runs"]
    # The service's instance runs too.
    assert "Needs attention (1)" in headings
    assert "Running now (2)" in headings
    assert "Europe/Paris" in text(doc.find(id="daemon-h").parent)
    nodes = rows(doc.select_one("#daemon-h ~ .table-wrap table"))
    assert len(nodes) == 1
    assert "alive" in text(nodes[0])
    attention = doc.find(id="attention-h").parent
    assert "broken" in text(attention)
    assert "failed" in text(attention)
    assert "quick" not in text(attention)
    running = doc.find(id="running-h").parent
    elapsed = running.select_one("[data-elapsed-since]")
    assert elapsed is not None
    assert str(elapsed["data-elapsed-since"]).endswith("Z")
    assert running.find("a", href=f"/ui/runs/{history['sleeper'][0]}") is not None
    upcoming = text(doc.find(id="next-h").parent)
    assert "nightly" in upcoming
    assert "every day at 03:00" in upcoming
    recent = rows(doc.select_one("#recent-h ~ .table-wrap table"))
    assert len(recent) == 7  # and the service instance
    assert doc.select_one("[data-live][hx-get='/ui/'][hx-trigger^='runs-changed from:body']")


def test_the_overview_fragment_is_only_the_live_part(client: httpx.Client) -> None:
    response = client.get("/ui/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.headers["vary"] == "HX-Request"
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/ui/").headers["vary"] == "HX-Request"
    doc = soup(response)
    assert doc.find("html") is None
    assert doc.find("h1") is None
    live = doc.find(attrs={"data-live": True})
    assert live is not None
    assert live["id"] == "overview-live"
    assert live["hx-swap"] == "outerHTML"
    assert doc.find(id="running-h") is not None


def test_the_tasks_page_lists_tasks_and_services_with_schedule_strip_and_actions(
    client: httpx.Client, history: dict[str, list[str]]
) -> None:
    doc = page_checks(client.get("/ui/tasks"))

    table = doc.select_one("table.tasks")
    found = {text(tr.find("td").find("a")): tr for tr in rows(table)}
    assert sorted(found) == ["broken", "locked", "nightly", "quick", "sleeper", "web"]
    assert "service" in text(found["web"])
    assert "service" not in text(found["quick"])
    nightly = text(found["nightly"])
    assert "0 3 * * *" in nightly
    assert "every day at 03:00" in nightly
    assert "Europe/Paris" in nightly
    assert found["nightly"].find("time") is not None  # its next run
    cells = found["quick"].select(".strip .cell")
    assert len(cells) == 3
    assert all(c.get("title", "").startswith("success") for c in cells)
    assert [text(c) for c in cells] == ["S", "S", "S"]
    strip = found["quick"].select_one(".strip")
    assert strip["role"] == "img"
    assert strip["aria-label"] == "Last 3 outcomes, oldest first: 3 success; newest success"
    broken = found["broken"].select_one(".strip")["aria-label"]
    assert broken == "Last 2 outcomes, oldest first: 2 failed; newest failed"
    assert not found["quick"].select(".strip a")  # no tab stop per cell
    assert "failed" in text(found["broken"].find_all("td")[3])
    forms = {
        tr: [f["action"] for f in found[tr].select("form[method=post]")]
        for tr in ("quick", "sleeper", "web", "locked")
    }
    assert forms["quick"] == ["/ui/tasks/quick/run"]
    assert forms["sleeper"] == ["/ui/tasks/sleeper/run", "/ui/tasks/sleeper/stop"]
    assert forms["web"] == ["/ui/tasks/web/restart", "/ui/tasks/web/stop"]
    assert forms["locked"] == []
    assert all(f.find("input", attrs={"name": "csrf_token"}) for f in table.select("form"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "SLE"}, ["sleeper"]),
        ({"kind": "service"}, ["web"]),
        ({"state": "attention"}, ["broken"]),
        ({"state": "running"}, ["sleeper", "web"]),
        ({"state": "scheduled"}, ["nightly"]),
        ({"state": "manual"}, ["broken", "locked", "quick", "sleeper"]),
        ({"state": "manual", "q": "k"}, ["broken", "locked", "quick"]),
    ],
)
def test_the_tasks_page_filters_by_name_kind_and_state(
    client: httpx.Client,
    history: dict[str, list[str]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    wait_for(lambda: client.get("/api/tasks/web/runs").json()["total"] >= 1, 10)
    doc = page_checks(client.get("/ui/tasks", params=params))

    names = [text(tr.find("td").find("a")) for tr in rows(doc.select_one("table.tasks"))]
    assert names == expected


def test_a_bad_tasks_filter_is_a_400_page_naming_it(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/tasks", params={"state": "sleepy"}), 400)

    assert "state 'sleepy' is not one of" in text(doc.find(attrs={"role": "alert"}))


def test_run_now_triggers_a_run_and_comes_back_with_a_notice(client: httpx.Client) -> None:
    before = client.get("/api/tasks/quick/runs").json()["total"]

    response = client.post("/ui/tasks/quick/run", data={"csrf_token": "", "next": "/ui/tasks?q=qu"})

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/tasks?q=qu"
    assert client.get("/api/tasks/quick/runs").json()["total"] == before + 1
    doc = page_checks(client.get("/ui/tasks?q=qu"))
    assert "quick: run" in text(doc.select_one(".notice"))
    assert "triggered" in text(doc.select_one(".notice"))
    # Shown once.
    assert page_checks(client.get("/ui/tasks?q=qu")).select_one(".notice") is None


def test_stop_ends_a_tasks_running_and_queued_runs(
    client: httpx.Client, history: dict[str, list[str]]
) -> None:
    queued = trigger(client, "sleeper", wait=False)  # behind the running one

    response = client.post("/ui/tasks/sleeper/stop", data={"next": "/ui/tasks"})

    assert response.status_code == 303
    for run_id in (history["sleeper"][0], queued["id"]):
        ended = client.get(f"/api/runs/{run_id}").json()
        assert ended["status"] == "ended"
        assert ended["end_reason"] == "stopped"
    notice = text(page_checks(client.get("/ui/tasks")).select_one(".notice"))
    assert notice == "sleeper: 2 run(s) stopped"


def test_an_action_on_an_unknown_task_comes_back_with_the_reason(client: httpx.Client) -> None:
    response = client.post("/ui/tasks/nosuch/run", data={"next": "//evil.example/x"})

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/tasks"
    assert "nosuch" in text(page_checks(client.get("/ui/tasks")).select_one(".notice"))


def test_restart_restarts_a_service(client: httpx.Client) -> None:
    wait_for(lambda: client.get("/api/tasks/web/runs").json()["total"] >= 1, 10)
    first = client.get("/api/tasks/web/runs").json()["runs"][0]["id"]

    response = client.post("/ui/tasks/web/restart", data={"next": "/ui/tasks"})

    assert response.status_code == 303
    wait_for(lambda: client.get("/api/tasks/web/runs").json()["runs"][0]["id"] != first, 15)


def test_the_nodes_page_lists_this_node(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/nodes"))

    found = rows(doc.find("table"))
    assert len(found) == 1
    assert "this node" in text(found[0])
    assert "alive" in text(found[0])
    assert len(found[0].find_all("time")) == 2
    fragment = soup(client.get("/ui/nodes", headers={"HX-Request": "true"}))
    assert fragment.find("h1") is None
    assert fragment.find(id="nodes-live") is not None


def test_pages_carry_no_secret_and_no_token(daemon: DaemonProcess, client: httpx.Client) -> None:
    token = daemon.headers["Authorization"].split()[-1]
    for path in ("/ui/", "/ui/tasks", "/ui/tasks/nightly", "/ui/runs", "/ui/nodes"):
        body = client.get(path).text
        assert "s3cr3t-value-42" not in body, path
        assert token not in body, path
