"""The client commands against canned answers: the shapes of routes other branches add
(``/api/nodes``, ``/api/notifiers/{name}/test``) and how exit codes are chosen."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest

from app.cli import build_parser
from app.client import commands
from app.client.api import Api

NODES = {
    "nodes": [
        {
            "id": "node-a",
            "host": "box1",
            "pid": 4242,
            "version": "0.1.0",
            "started_at": "2026-12-06T20:00:00Z",
            "heartbeat_at": "2026-12-06T21:00:00.5Z",
            "alive": True,
            "running_runs": 3,
            "config_hash": "sha256:0123456789abcdef",
        },
        {
            "id": "node-b",
            "host": "box2",
            "pid": 7,
            "version": "0.1.0",
            "started_at": "2026-12-06T19:00:00Z",
            "heartbeat_at": "2026-12-06T20:10:00Z",
            "alive": False,
            "running_runs": 0,
            "config_hash": "sha256:fedcba9876543210",
        },
    ]
}


def answer(routes: dict[tuple[str, str], httpx.Response]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        return routes.get((request.method, request.url.path), httpx.Response(404, json={}))

    return httpx.MockTransport(handle)


def run(argv: list[str], transport: httpx.MockTransport, monkeypatch: pytest.MonkeyPatch) -> int:
    real = Api.__init__

    def with_transport(self: Api, url: str, token: str | None) -> None:
        real(self, url, token)
        self.http = httpx.Client(base_url=self.url, transport=transport)

    monkeypatch.setattr(Api, "__init__", with_transport)
    args: argparse.Namespace = build_parser().parse_args(argv)
    return commands.run(args)


def test_nodes_prints_each_node(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = answer({("GET", "/api/nodes"): httpx.Response(200, json=NODES)})
    assert run(["nodes"], transport, monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID", "HOST:PID", "VERSION", "STARTED", "HEARTBEAT", "STATE", "RUNNING", "CONFIG",
    ]  # fmt: skip
    assert lines[1].split()[:2] == ["node-a", "box1:4242"]
    assert "alive" in lines[1].split()
    assert "dead" in lines[2].split()
    assert run(["nodes", "--json"], transport, monkeypatch) == 0
    assert json.loads(capsys.readouterr().out) == NODES


def test_notify_test_prints_the_servers_message_or_its_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = httpx.Response(201, json={"id": "n1", "status": "delivered"})
    transport = answer({("POST", "/api/notifiers/slack/test"): sent})
    assert run(["notify", "test", "slack"], transport, monkeypatch) == 0
    assert capsys.readouterr().out == "notification n1 to slack: delivered\n"
    given_up = {"id": "n2", "status": "dead", "last_error": "404 Not Found"}
    transport = answer({("POST", "/api/notifiers/slack/test"): httpx.Response(201, json=given_up)})
    assert run(["notify", "test", "slack"], transport, monkeypatch) == 1
    assert capsys.readouterr().out == "notification n2 to slack: dead (404 Not Found)\n"
    problem: dict[str, Any] = {"status": 502, "title": "Bad Gateway", "detail": "slack said 403"}
    transport = answer({("POST", "/api/notifiers/slack/test"): httpx.Response(502, json=problem)})
    assert run(["notify", "test", "slack"], transport, monkeypatch) == 1
    assert capsys.readouterr().err == "runwarden: 502 Bad Gateway: slack said 403\n"


@pytest.mark.parametrize(
    ("run_body", "code"),
    [
        ({"end_reason": "success", "exit_code": 0}, 0),
        ({"end_reason": "failed", "exit_code": 3}, 3),
        ({"end_reason": "timeout", "exit_code": -1}, 1),
        ({"end_reason": "crashed", "exit_code": -2}, 1),
        ({"end_reason": "skipped", "exit_code": -1}, 1),
    ],
)
def test_trigger_wait_exit_status(run_body: dict[str, Any], code: int) -> None:
    assert commands._exit_status(run_body) == code
