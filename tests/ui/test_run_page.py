"""The run page through HTTP on a real daemon: facts, actions as plain forms, the log tail.

The daemon runs with ``RUNWARDEN_AUTH=off``, so the pages answer without a login; the forms
still carry the page's ``csrf_token`` and a same-origin ``Origin``, as a browser sends them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from bs4 import BeautifulSoup, Tag

from app.ui.pages.run import CsrfRefused, check_csrf
from app.ui.render import SESSION_CSRF
from tests.api.logs_support import trigger, wait_ended
from tests.support.daemon import DaemonProcess, running_daemon, wait_for

CONFIG = r"""
[tasks.seq]
run = "seq 1 2500"

[tasks.flood]
run = "seq 1 300000"

[tasks.colours]
run = '''printf '\033[1;31mred\033[0m <script>alert(1)</script> \033[2Kplain\n' '''

[tasks.waiting]
run = "echo started; exec sleep 60"
graceful_stop = "1s"
"""


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    with running_daemon(
        CONFIG,
        module_database_url,
        tmp_path_factory.mktemp("run-page"),
        {"RUNWARDEN_AUTH": "off"},
    ) as process:
        yield process


def finished(client: httpx.Client, task: str) -> str:
    run_id = trigger(client, task)
    wait_ended(client, run_id)
    return run_id


def html(response: httpx.Response) -> BeautifulSoup:
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    return BeautifulSoup(response.text, "html.parser")


def shown_numbers(soup: BeautifulSoup) -> list[int]:
    return [int(str(line["data-n"])) for line in soup.select("#log-lines .ll")]


def post_form(
    client: httpx.Client, daemon: DaemonProcess, page: str, action: str
) -> httpx.Response:
    """Submit the page's form for ``action`` as a browser does: its fields, our Origin."""
    soup = html(client.get(page))
    form = soup.find("form", action=lambda a: bool(a) and a.endswith(f"/{action}"))
    assert isinstance(form, Tag), f"no {action} form on {page}"
    fields = {str(i["name"]): str(i.get("value", "")) for i in form.find_all("input")}
    return client.post(str(form["action"]), data=fields, headers={"Origin": daemon.url})


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with daemon.client() as c:
        yield c


def test_the_page_shows_the_run_facts_and_links_its_task(
    client: httpx.Client, daemon: DaemonProcess
) -> None:
    run_id = finished(client, "seq")
    soup = html(client.get(f"/ui/runs/{run_id}"))
    assert len(soup.find_all("h1")) == 1
    assert run_id in soup.h1.get_text()  # type: ignore[union-attr]
    facts = {
        str(dt.get_text(strip=True)): dt.find_next_sibling("dd") for dt in soup.select(".facts dt")
    }
    assert facts["Task"].a["href"] == "/ui/tasks/seq"  # type: ignore[index,union-attr]
    assert facts["Status"]["data-run-status"] == "success"  # type: ignore[index]
    assert "succeeded" in facts["Status"].get_text()  # type: ignore[union-attr]
    assert facts["Exit code"].get_text(strip=True) == "0"  # type: ignore[union-attr]
    assert facts["Trigger"].get_text(strip=True) == "api"  # type: ignore[union-attr]
    assert facts["Started"].find("time")["datetime"].endswith("Z")  # type: ignore[index,union-attr]
    assert facts["Duration"].get_text(strip=True) not in ("", "—")  # type: ignore[union-attr]
    actions = {str(f["action"]) for f in soup.select(".run-actions form")}
    assert actions == {f"/ui/runs/{run_id}/rerun", f"/ui/runs/{run_id}/delete"}
    for form in soup.select(".run-actions form"):
        assert form["method"] == "post"
        assert form.find("input", attrs={"name": "csrf_token"})
    raw = soup.find("a", string="Raw log")
    assert raw["href"] == f"/api/tasks/seq/runs/{run_id}/log/raw"  # type: ignore[index]
    log = soup.find(id="log-lines")
    assert log["role"] == "log"
    assert log["aria-live"] == "off"
    assert "Stream ended" in soup.select_one(".log-status").get_text()  # type: ignore[union-attr]


def test_the_log_opens_on_its_last_500_lines_and_pages_backwards(
    client: httpx.Client,
) -> None:
    run_id = finished(client, "seq")
    soup = html(client.get(f"/ui/runs/{run_id}"))
    assert shown_numbers(soup) == list(range(2000, 2500))
    assert soup.select_one("#log-lines .ll .lt").get_text() == "2001"  # type: ignore[union-attr]
    earlier = soup.select_one(".log-earlier a")
    assert earlier["href"] == f"/ui/runs/{run_id}?before=2000#log"  # type: ignore[index]
    assert "2000 earlier lines" in earlier.get_text()  # type: ignore[union-attr]
    viewer = soup.select_one("[data-log-viewer]")
    assert viewer["data-end"] == "2500"
    assert viewer["data-follow"] == "off"

    # Without JavaScript: the link shows the page of lines before the first one shown.
    soup = html(client.get(f"/ui/runs/{run_id}?before=2000"))
    assert shown_numbers(soup) == list(range(1500, 2000))
    assert "500 later lines" in soup.select_one(".log-later").get_text()  # type: ignore[union-attr]
    soup = html(client.get(f"/ui/runs/{run_id}?before=300"))
    assert shown_numbers(soup) == list(range(0, 300))
    assert soup.select_one(".log-earlier").has_attr("hidden")  # type: ignore[union-attr]

    # With JavaScript: the same lines as a fragment, placed above those shown.
    fragment = html(client.get(f"/ui/runs/{run_id}/log?before=2000"))
    chunk = fragment.select_one(".log-chunk")
    assert chunk["data-first"] == "1500"
    assert chunk["data-end"] == "2000"
    assert [int(str(x["data-n"])) for x in fragment.select(".ll")] == list(range(1500, 2000))
    assert fragment.find("html") is None


def test_a_big_log_page_shows_only_its_tail(client: httpx.Client) -> None:
    run_id = finished(client, "flood")
    started = time.monotonic()
    response = client.get(f"/ui/runs/{run_id}")
    elapsed = time.monotonic() - started
    soup = html(response)
    assert shown_numbers(soup) == list(range(299_500, 300_000))
    assert soup.select_one("#log-lines .ll .lt").get_text() == "299501"  # type: ignore[union-attr]
    assert "299500 earlier lines" in soup.select_one(".log-earlier").get_text()  # type: ignore[union-attr]
    # 500 short lines of markup, not 300,000 (whose text alone is about 2 MB).
    assert len(response.content) < 200_000
    assert elapsed < 5


def test_log_text_is_escaped_and_its_colours_become_classes(client: httpx.Client) -> None:
    run_id = finished(client, "colours")
    response = client.get(f"/ui/runs/{run_id}")
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    line = html(response).select_one("#log-lines .ll-stdout .lt")
    red = line.find("span")  # type: ignore[union-attr]
    assert red["class"] == ["ansi-bold", "ansi-fg-1"]
    assert red.get_text() == "red"
    assert "\x1b" not in line.get_text()
    assert line.get_text().endswith(" plain")
    assert "style=" not in response.text


def test_unknown_runs_and_bad_input_get_clear_pages(client: httpx.Client) -> None:
    missing = client.get("/ui/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.status_code == 404
    assert html(missing).h1.get_text() == "Run not found"  # type: ignore[union-attr]
    odd = client.get("/ui/runs/%3Cscript%3E")
    assert odd.status_code == 404
    assert "<script>" not in odd.text
    run_id = finished(client, "seq")
    for bad in ("-1", "x", "1e3", "99999999999999999999"):
        response = client.get(f"/ui/runs/{run_id}", params={"before": bad})
        assert response.status_code == 400, bad
        assert "before must be a line number" in response.text
    assert client.get(f"/ui/runs/{run_id}/log", params={"before": "x"}).status_code == 400
    assert client.get("/ui/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV/log").status_code == 404


def test_stop_from_the_page_ends_the_run(client: httpx.Client, daemon: DaemonProcess) -> None:
    run_id = trigger(client, "waiting")
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "running")
    page = f"/ui/runs/{run_id}"
    soup = html(client.get(page))
    assert soup.select_one("[data-log-viewer]")["data-follow"] == "on"  # type: ignore[index]
    assert soup.select_one("[data-elapsed-since]") is not None
    response = post_form(client, daemon, page, "stop")
    assert response.status_code == 303
    assert response.headers["location"] == page
    assert wait_ended(client, run_id, timeout=15)["end_reason"] == "stopped"
    # Stopping again is a conflict, said on a page.
    again = client.post(f"{page}/stop", data={"csrf_token": ""}, headers={"Origin": daemon.url})
    assert again.status_code == 409
    assert "Not possible" in html(again).h1.get_text()  # type: ignore[union-attr]


def test_run_again_and_delete_from_the_page(client: httpx.Client, daemon: DaemonProcess) -> None:
    first = finished(client, "seq")
    page = f"/ui/runs/{first}"
    response = post_form(client, daemon, page, "rerun")
    assert response.status_code == 303
    second = response.headers["location"].rsplit("/", 1)[1]
    assert second != first
    assert client.get(f"/api/runs/{second}").json()["task_name"] == "seq"
    wait_ended(client, second)

    response = post_form(client, daemon, page, "delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/tasks/seq"
    assert client.get(f"/api/runs/{first}").status_code == 404
    assert client.get(page).status_code == 404


def test_actions_the_run_does_not_allow_are_not_offered(client: httpx.Client) -> None:
    run_id = trigger(client, "waiting")
    try:
        soup = html(client.get(f"/ui/runs/{run_id}"))
        actions = {str(f["action"]).rsplit("/", 1)[1] for f in soup.select(".run-actions form")}
        assert actions == {"stop", "rerun"}  # no delete while it is active
        response = client.post(f"/ui/runs/{run_id}/delete", data={"csrf_token": ""})
        assert response.status_code == 409
    finally:
        client.post(f"/api/tasks/waiting/runs/{run_id}/stop")


def test_a_form_without_the_sessions_csrf_token_is_refused() -> None:
    class Session:
        """A cookie-authenticated form post, as the handler sees it."""

        scope = {SESSION_CSRF: "s3cret"}
        method = "POST"
        headers: dict[str, str] = {}

    for form in ({"csrf_token": "nope"}, {}, {"csrf_token": ""}):
        with pytest.raises(CsrfRefused):
            check_csrf(Session(), form)  # type: ignore[arg-type]
    check_csrf(Session(), {"csrf_token": "s3cret"})  # type: ignore[arg-type]
