"""Notifications end to end: a real daemon, a scripted receiver and an SMTP sink on
127.0.0.1. Retries, backoff, Retry-After, dead states, the same webhook-id on every try,
signatures, the API, the metrics.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.support.daemon import DaemonProcess, free_port, running_daemon, wait_for
from tests.support.receiver import Answer, Receiver, receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = {"RUNWARDEN_NOTIFY_POLL": "0.2"}


class Sink:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


CONFIG = """
[notify]
retry_budget = "8s"

[notifiers.flaky]
type = "webhook"
url = "{url}/flaky"
secret = "${{HOOK_SECRET}}"
headers = {{ Authorization = "Bearer ${{HOOK_TOKEN}}" }}
tasks = ["fails-flaky"]

[notifiers.throttled]
type = "webhook"
url = "{url}/throttled"
tasks = ["fails-throttled"]

[notifiers.missing]
type = "webhook"
url = "{url}/missing"
tasks = ["fails-404"]

[notifiers.gone]
type = "slack"
url = "{url}/gone/T000/B000/XXXXSECRETPATH"
tasks = ["fails-410"]

[notifiers.hangs]
type = "discord"
url = "{url}/hangs"
timeout = "1s"
tasks = ["fails-hang"]

[notifiers.mail]
type = "smtp"
host = "127.0.0.1"
port = {smtp_port}
from = "runwarden@example.com"
to = ["ops@example.com"]
tasks = ["fails-mail"]

[notifiers.many]
type = "apprise"
url = "{apprise_url}"
tasks = ["fails-apprise"]

[notifiers.watch]
type = "webhook"
url = "{url}/watch"
on = ["long_running"]
tasks = ["slow"]

[tasks.slow]
run = "sleep 60"
warn_after = "1s"
graceful_stop = "1s"

[tasks.fails-flaky]
run = "for i in $(seq 1 30); do echo line $i; done; exit 3"

[tasks.fails-throttled]
run = "exit 1"

[tasks.fails-404]
run = "exit 1"

[tasks.fails-410]
run = "exit 1"

[tasks.fails-hang]
run = "exit 1"

[tasks.fails-apprise]
run = "exit 4"

[tasks.fails-mail]
run = "echo mailed; exit 2"

[tasks.muted]
run = "exit 1"
notify = []
"""


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        r.script("/flaky", Answer(500), Answer(500), Answer(200))
        r.script("/throttled", Answer(429, {"Retry-After": "2"}), Answer(200))
        r.script("/missing", Answer(404))
        r.script("/gone/T000/B000/XXXXSECRETPATH", Answer(410))
        r.script("/hangs", Answer(200, hang=30))
        r.script("/watch", Answer(200))
        r.script("/apprise", Answer(200))
        yield r


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def daemon(
    hook: Receiver,
    sink: tuple[Sink, int],
    module_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaemonProcess]:
    apprise_url = "json://" + hook.url.removeprefix("http://") + "/apprise"
    config = CONFIG.format(url=hook.url, smtp_port=sink[1], apprise_url=apprise_url)
    env = {**FAST, "HOOK_SECRET": SECRET, "HOOK_TOKEN": "tok-123456"}
    workdir = tmp_path_factory.mktemp("notify")
    with running_daemon(config, module_database_url, workdir, env) as started:
        yield started


def _fail(client: httpx.Client, task: str) -> str:
    response = client.post(f"/api/tasks/{task}/run?wait=true&wait_timeout=60")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _notifications(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/notifications", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["notifications"])


def _settled(client: httpx.Client, channel: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        found = _notifications(client, channel=channel)
        done = [n for n in found if n["status"] in ("delivered", "dead")]
        return done[0] if done else None

    found = wait_for(final, timeout=60)
    detail = client.get(f"/api/notifications/{found['id']}")
    assert detail.status_code == 200
    return dict(detail.json())


def _verify(received: Any, secret: str) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{received.webhook_id}.{received.headers['webhook-timestamp']}.".encode()
    digest = hmac.new(key, signed + received.body, hashlib.sha256).digest()
    assert received.headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


def test_500_500_200_is_retried_with_backoff_and_one_signed_id(
    daemon: DaemonProcess, hook: Receiver
) -> None:
    with daemon.client() as client:
        run_id = _fail(client, "fails-flaky")
        found = _settled(client, "flaky")
    assert found["status"] == "delivered"
    assert [(a["n"], a.get("status_code"), a["outcome"]) for a in found["attempts"]] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 200, "delivered"),
    ]
    tries = hook.at("/flaky")
    assert len(tries) == 3
    assert {t.webhook_id for t in tries} == {found["id"]}
    assert len({t.body for t in tries}) == 1  # the same message every time
    for received in tries:
        _verify(received, SECRET)
        assert received.headers["authorization"] == "Bearer tok-123456"
    # Backoff: at least ~1 s, then ~2 s (minus the jitter); lower bounds only.
    assert tries[1].at - tries[0].at >= 0.75
    assert tries[2].at - tries[1].at >= 1.5
    body = tries[0].json
    assert body["type"] == "run.failed"
    data = body["data"]
    assert (data["task"], data["run_id"], data["end_reason"], data["exit_code"]) == (
        "fails-flaky",
        run_id,
        "failed",
        3,
    )
    assert data["count"] == 1
    assert data["triggered_by"] == "api"
    assert data["output_tail"] == [f"line {i}" for i in range(11, 31)]
    assert data["url"].endswith(f"/api/tasks/fails-flaky/runs/{run_id}")
    assert body["timestamp"].endswith("Z")


def test_429_waits_for_retry_after(daemon: DaemonProcess, hook: Receiver) -> None:
    with daemon.client() as client:
        _fail(client, "fails-throttled")
        found = _settled(client, "throttled")
    assert found["status"] == "delivered"
    first, second = hook.at("/throttled")
    assert second.at - first.at >= 1.9  # Retry-After: 2 beats the 1 s backoff
    assert first.webhook_id == second.webhook_id


@pytest.mark.parametrize(
    ("channel", "task", "code", "path"),
    [
        ("missing", "fails-404", 404, "/missing"),
        ("gone", "fails-410", 410, "/gone/T000/B000/XXXXSECRETPATH"),
    ],
)
def test_a_refusal_is_dead_at_once_and_can_be_retried_by_hand(
    daemon: DaemonProcess, hook: Receiver, channel: str, task: str, code: int, path: str
) -> None:
    with daemon.client() as client:
        _fail(client, task)
        found = _settled(client, channel)
        assert found["status"] == "dead"
        assert [a.get("status_code") for a in found["attempts"]] == [code]
        assert "XXXXSECRETPATH" not in str(found)
        again = client.post(f"/api/notifications/{found['id']}/retry")
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "pending"

        def tried_twice() -> dict[str, Any] | None:
            now = client.get(f"/api/notifications/{found['id']}").json()
            return now if now["status"] == "dead" and len(now["attempts"]) == 2 else None

        assert wait_for(tried_twice)["attempts"][1]["status_code"] == code
    assert [r.webhook_id for r in hook.at(path)] == [found["id"]] * 2


def test_a_receiver_that_hangs_is_timed_out_retried_then_dead(
    daemon: DaemonProcess, hook: Receiver
) -> None:
    with daemon.client() as client:
        _fail(client, "fails-hang")
        found = _settled(client, "hangs")
    assert found["status"] == "dead"
    assert all(a["outcome"] in ("retry", "dead") for a in found["attempts"])
    assert len(found["attempts"]) >= 2
    assert "no answer within 1s" in found["attempts"][0]["error"]
    assert {r.webhook_id for r in hook.at("/hangs")} == {found["id"]}


def test_a_run_past_warn_after_is_reported_once(daemon: DaemonProcess, hook: Receiver) -> None:
    with daemon.client() as client:
        run = client.post("/api/tasks/slow/run").json()
        (received,) = hook.wait_for("/watch", 1)
        body = received.json
        assert body["type"] == "run.long_running"
        assert body["data"]["run_id"] == run["id"]
        assert body["data"]["warn_after_seconds"] == 1
        wait_for(lambda: _notifications(client, channel="watch", status="delivered"))
        stopped = client.post(f"/api/tasks/slow/runs/{run['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        assert len(_notifications(client, channel="watch")) == 1  # once per run
    assert len(hook.at("/watch")) == 1


def test_smtp_sink_receives_the_mail(daemon: DaemonProcess, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    with daemon.client() as client:
        run_id = _fail(client, "fails-mail")
        found = _settled(client, "mail")
    assert found["status"] == "delivered"
    (envelope,) = handler.messages
    assert envelope.mail_from == "runwarden@example.com"
    assert envelope.rcpt_tos == ["ops@example.com"]
    mail = message_from_bytes(envelope.content)
    assert mail["Subject"] == "fails-mail: failed (exit 2)"
    text = mail.get_payload(decode=True).decode()
    assert run_id in text
    assert "mailed" in text


def test_apprise_channel(daemon: DaemonProcess, hook: Receiver) -> None:
    with daemon.client() as client:
        _fail(client, "fails-apprise")
        found = _settled(client, "many")
    if importlib.util.find_spec("apprise") is None:
        # Without the extra the channel reports how to get it, and gives up.
        assert found["status"] == "dead"
        assert 'pip install "runwarden[apprise]"' in found["attempts"][0]["error"]
        return
    assert found["status"] == "delivered"
    (received,) = hook.at("/apprise")
    assert received.json["title"] == "fails-apprise: failed (exit 4)"
    assert "run_id:" in received.json["message"]


def test_muted_task_and_run_detail_count(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        muted = _fail(client, "muted")
        assert _notifications(client, run_id=muted) == []
        assert client.get(f"/api/runs/{muted}").json()["notifications"] == 0
        flaky = _notifications(client, channel="flaky")[0]
        detail = client.get(f"/api/tasks/fails-flaky/runs/{flaky['run_id']}").json()
        assert detail["notifications"] == 1
        assert detail["$schema"].endswith("/schemas/RunDetail.json")
        listed = client.get("/api/tasks/fails-flaky/runs").json()["runs"][0]
        assert "notifications" not in listed  # the seed listing stays as it is


def test_notifiers_are_listed_without_secrets(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        wait_for(lambda: _notifications(client, channel="flaky", status="delivered"))
        body = client.get("/api/notifiers").json()
    text = str(body)
    log = daemon.log()
    for secret in (SECRET, "tok-123456", "XXXXSECRETPATH"):
        assert secret not in text
        assert secret not in log
    by_name = {n["name"]: n for n in body["notifiers"]}
    assert by_name["flaky"]["signed"] is True
    assert by_name["flaky"]["header_names"] == ["Authorization"]
    assert by_name["flaky"]["url"].endswith("/…")
    assert "last_success_at" in by_name["flaky"]
    assert by_name["mail"]["to"] == ["ops@example.com"]


def test_notify_test_waits_for_the_outcome(daemon: DaemonProcess, hook: Receiver) -> None:
    with daemon.client() as client:
        hook.script("/flaky", Answer(200))
        answer = client.post("/api/notifiers/flaky/test?wait=true&wait_timeout=30")
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "delivered"
        assert answer.json()["type"] == "notify.test"
        unknown = client.post("/api/notifiers/flaki/test")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"].startswith("application/problem+json")
        bad = client.get("/api/notifications?status=sent")
        assert bad.status_code == 422
        missing = client.get("/api/notifications/not-an-id")
        assert missing.status_code == 404
        delivered = client.post(f"/api/notifications/{answer.json()['id']}/retry")
        assert delivered.status_code == 409
        assert "not dead" in delivered.json()["detail"]


def test_metrics_count_tries(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        wait_for(lambda: _notifications(client, channel="flaky", status="delivered"))
        text = client.get("/metrics").text
    assert 'runwarden_notifications_total{channel="flaky",outcome="retry"}' in text
    assert 'runwarden_notifications_total{channel="flaky",outcome="delivered"}' in text
    assert 'runwarden_notifications_dead{channel="missing"}' in text
    assert 'runwarden_notifications_pending{channel="flaky"}' in text


def test_unauthenticated_is_refused(daemon: DaemonProcess) -> None:
    assert httpx.get(f"{daemon.url}/api/notifications").status_code == 401
    assert httpx.post(f"{daemon.url}/api/notifiers/flaky/test").status_code == 401


def test_cli_notify_test(daemon: DaemonProcess, hook: Receiver, tmp_path: Path) -> None:
    import subprocess
    import sys

    hook.script("/flaky", Answer(200))
    env = {"RUNWARDEN_TOKEN": daemon.token or "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "notify", "test", "flaky", "--url", daemon.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "delivered" in done.stdout
