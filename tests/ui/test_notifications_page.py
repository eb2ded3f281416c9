"""``/ui/notifications``: channels without their secrets, a test, a retry of a dead one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonProcess, running_daemon, wait_for
from tests.support.receiver import Answer, Receiver, receiver
from tests.ui.html import page_checks, rows, soup, text

CONFIG = """
[notifiers.ok]
type = "webhook"
url = "{url}/ok/SECRETPATHPART"
headers = {{ Authorization = "Bearer header-secret-77" }}
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[notifiers.refuses]
type = "webhook"
url = "{url}/refuses"

[tasks.quick]
run = "true"
notify = []
"""


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with receiver() as state:
        state.script("/ok/SECRETPATHPART", Answer(200))
        yield state


@pytest.fixture(scope="module")
def daemon(
    hook: Receiver, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("ui_notify")
    config = CONFIG.format(url=hook.url)
    with running_daemon(
        config, module_database_url, workdir, {"RUNWARDEN_NOTIFY_POLL": "0.2"}
    ) as started:
        yield started


def deliveries(client: httpx.Client, channel: str) -> list[dict[str, Any]]:
    return list(
        client.get("/api/notifications", params={"channel": channel}).json()["notifications"]
    )


def test_the_page_lists_the_channels_without_their_secrets(client: httpx.Client) -> None:
    doc = page_checks(client.get("/ui/notifications"))

    assert text(doc.find("h1")) == "Notifications"
    channels = rows(doc.select_one("#channels-h ~ .table-wrap table"))
    assert [text(tr.find("td")) for tr in channels] == ["ok", "refuses"]
    tests = [f["action"] for f in doc.select("#channels-h ~ .table-wrap form")]
    assert tests == [
        "/ui/notifications/channels/ok/test",
        "/ui/notifications/channels/refuses/test",
    ]
    body = doc.decode()
    for secret in ("SECRETPATHPART", "header-secret-77", "whsec_"):
        assert secret not in body


def test_send_test_queues_a_test_that_is_delivered(client: httpx.Client, hook: Receiver) -> None:
    response = client.post("/ui/notifications/channels/ok/test", data={"next": "/ui/notifications"})

    assert response.status_code == 303
    hook.wait_for("/ok/SECRETPATHPART", 1, timeout=20)
    wait_for(lambda: deliveries(client, "ok")[0]["status"] == "delivered", 20)
    doc = page_checks(client.get("/ui/notifications"))
    assert "test notification" in text(doc.select_one(".notice"))
    first = rows(doc.select_one("#deliveries-live table"))[0]
    assert "notify.test" in text(first)
    assert "delivered" in text(first)
    assert first.find("time")["datetime"].endswith("Z")
    assert first.find("form") is None  # nothing to retry


def test_a_dead_delivery_has_a_retry_button_that_retries_it(client: httpx.Client) -> None:
    client.post("/ui/notifications/channels/refuses/test", data={"next": "/ui/notifications"})
    wait_for(lambda: deliveries(client, "refuses")[0]["status"] == "dead", 20)
    dead = deliveries(client, "refuses")[0]

    doc = page_checks(client.get("/ui/notifications"))
    row = next(tr for tr in rows(doc.select_one("#deliveries-live table")) if "refuses" in text(tr))
    assert "dead" in text(row)
    form = row.find("form")
    assert form["action"] == f"/ui/notifications/{dead['id']}/retry"

    response = client.post(form["action"], data={"next": "/ui/notifications"})

    assert response.status_code == 303
    wait_for(
        lambda: client.get(f"/api/notifications/{dead['id']}").json()["attempt_count"] == 2, 20
    )
    assert "will be retried" in text(
        page_checks(client.get("/ui/notifications")).select_one(".notice")
    )


def test_retrying_one_that_is_not_dead_says_why(client: httpx.Client) -> None:
    delivered = deliveries(client, "ok")[0]

    client.post(f"/ui/notifications/{delivered['id']}/retry", data={})

    notice = text(page_checks(client.get("/ui/notifications")).select_one(".notice"))
    assert "not dead" in notice


def test_the_fragment_is_the_deliveries_only(client: httpx.Client) -> None:
    doc = soup(client.get("/ui/notifications", headers={"HX-Request": "true"}))

    assert doc.find("h1") is None
    assert doc.find(id="deliveries-live") is not None
    assert doc.find(id="channels-h") is None
