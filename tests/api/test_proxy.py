"""Behind a reverse proxy: root path, X-Forwarded-* from trusted peers only, headers, ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import DaemonProcess, start_daemon

CONFIG = """
[tasks.alpha]
run = "echo alpha"
"""
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "proxy.example"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _start(database_url: str, workdir: Path, **options: object) -> DaemonProcess:
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    return start_daemon(config, database_url, workdir, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rooted(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """Served under /rw, with no trusted proxy."""
    daemon = _start(
        module_database_url, tmp_path_factory.mktemp("rooted"), args=["--root-path", "/rw"]
    )
    try:
        yield daemon
    finally:
        daemon.terminate()


@pytest.fixture(scope="module")
def proxied(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """At the root, trusting the test client's address (127.0.0.1) as a proxy."""
    daemon = _start(
        module_database_url,
        tmp_path_factory.mktemp("proxied"),
        extra_env={"RUNWARDEN_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"},
    )
    try:
        yield daemon
    finally:
        daemon.terminate()


@pytest.mark.parametrize("path", ["/rw/api/tasks", "/api/tasks"])
def test_under_a_root_path_schema_urls_carry_it_whether_or_not_the_proxy_strips_it(
    rooted: DaemonProcess, path: str
) -> None:
    with rooted.client() as client:
        body = client.get(path).json()
    assert body["$schema"] == f"{rooted.url}/rw/schemas/TasksResponseBody.json"
    assert body["tasks"][0]["$schema"] == f"{rooted.url}/rw/schemas/Task.json"


def test_under_a_root_path_the_openapi_servers_and_the_docs_page_use_it(
    rooted: DaemonProcess,
) -> None:
    with rooted.client() as client:
        assert client.get("/rw/openapi.json").json()["servers"] == [{"url": "/rw"}]
        page = client.get("/rw/docs/").text
        assert 'src="/rw/docs/assets/swagger-ui-bundle.js"' in page
        assert client.get("/rw/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_sse_events_under_a_root_path_stream_with_schema_urls_that_carry_it(
    rooted: DaemonProcess,
) -> None:
    with (
        rooted.client() as client,
        client.stream("GET", "/rw/api/runs/stream", params={"task_name": "alpha"}) as stream,
    ):
        assert stream.status_code == 200
        assert client.post("/rw/api/tasks/alpha/run").status_code == 201
        data = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(data.removeprefix("data:"))["$schema"] == f"{rooted.url}/rw/schemas/Run.json"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(rooted: DaemonProcess) -> None:
    with rooted.client() as client:
        body = client.get("/rw/api/tasks", headers=FORWARDED).json()
    assert body["$schema"].startswith(f"{rooted.url}/rw/")


def test_forwarded_headers_from_a_trusted_peer_make_the_schema_url(
    proxied: DaemonProcess,
) -> None:
    with proxied.client() as client:
        body = client.get("/api/tasks", headers=FORWARDED).json()
        prefixed = client.get("/api/tasks", headers={**FORWARDED, "X-Forwarded-Prefix": "/edge"})
    assert body["$schema"] == "https://proxy.example/schemas/TasksResponseBody.json"
    assert prefixed.json()["$schema"] == "https://proxy.example/edge/schemas/TasksResponseBody.json"


def test_problems_made_before_routing_use_the_forwarded_url_too(proxied: DaemonProcess) -> None:
    response = httpx.get(f"{proxied.url}/api/tasks", headers=FORWARDED, timeout=10)
    assert response.status_code == 401
    assert response.json()["$schema"] == "https://proxy.example/schemas/ErrorModel.json"


def test_security_headers_are_on_successes_errors_and_refusals(proxied: DaemonProcess) -> None:
    with proxied.client() as client:
        responses = {
            200: client.get("/api/tasks"),
            404: client.get("/api/tasks/missing"),
            401: httpx.get(f"{proxied.url}/api/tasks", timeout=10),
            405: client.delete("/api/tasks"),
        }
    for status, response in responses.items():
        assert response.status_code == status
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (status, name)
        assert response.headers["cache-control"] == "no-store", status
        assert "default-src 'none'" in response.headers["content-security-policy"], status


def test_the_docs_page_is_framed_by_nobody_and_loads_only_its_own_files(
    proxied: DaemonProcess,
) -> None:
    response = httpx.get(f"{proxied.url}/docs/", timeout=10)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'self'" in policy


def test_a_sane_request_id_is_echoed_and_otherwise_one_is_generated(
    proxied: DaemonProcess,
) -> None:
    with proxied.client() as client:
        echoed = client.get("/health", headers={"X-Request-ID": "abc-123_x.y"})
        replaced = client.get("/health", headers={"X-Request-ID": "bad id!"})
        generated = [client.get("/health").headers["x-request-id"] for _ in range(2)]
    assert echoed.headers["x-request-id"] == "abc-123_x.y"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    assert generated[0] != generated[1]


def test_a_body_over_one_mebibyte_is_a_413_problem(proxied: DaemonProcess) -> None:
    with proxied.client() as client:
        response = client.post(
            "/api/tasks/alpha/run",
            content=b" " * (2 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Request Entity Too Large"
    assert response.headers["x-content-type-options"] == "nosniff"
