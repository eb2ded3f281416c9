"""Bearer-token auth on a real daemon: every route, token sources, auth off, rate limiting."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import httpx
import pytest
from ulid import ULID

from tests.support.cli import runwarden
from tests.support.daemon import DaemonProcess, start_daemon

CONFIG = """
[tasks.alpha]
run = "echo alpha"

[services.web]
run = "sleep 60"
graceful_stop = "1s"
"""
PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("GET", "/schemas/{name}")}
PATH_VALUES = {
    "taskName": "alpha",
    "runId": str(ULID()),
    "name": "Run.json",
    "notificationId": "00000000-0000-0000-0000-000000000000",
}
_addresses = count(1)


def client_ip() -> dict[str, str]:
    """A distinct client address per call, told by the trusted proxy (127.0.0.1).

    Each test gets its own clients, so the failures one test makes do not rate limit another.
    """
    n = next(_addresses)
    return {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("auth")
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    process = start_daemon(
        config, module_database_url, workdir, {"RUNWARDEN_TRUSTED_PROXIES": "127.0.0.1"}
    )
    try:
        yield process
    finally:
        process.terminate()


def operations(daemon: DaemonProcess) -> list[tuple[str, str]]:
    document = httpx.get(f"{daemon.url}/openapi.json", timeout=10).json()
    found = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(found) >= 15  # the document lists the API, not an empty shell
    return found


def status_of(daemon: DaemonProcess, method: str, url: str, headers: dict[str, str]) -> int:
    # Streamed, so the SSE endpoints answer with their status and are then closed.
    with (
        httpx.Client(timeout=10) as client,
        client.stream(method, url, headers={**headers, **client_ip()}) as response,
    ):
        if response.status_code == 401:
            response.read()
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
            body = response.json()
            assert (body["status"], body["title"]) == (401, "Unauthorized")
            assert body["$schema"] == f"{daemon.url}/schemas/ErrorModel.json"
        return response.status_code


def test_every_api_operation_needs_the_token_and_public_ones_do_not(
    daemon: DaemonProcess,
) -> None:
    for method, template in operations(daemon):
        url = daemon.url + re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
        without = status_of(daemon, method, url, {})
        with_token = status_of(daemon, method, url, daemon.headers)
        where = f"{method} {template}"
        if (method, template) in PUBLIC:
            assert without == with_token == 200, where
        else:
            assert without == 401, where
            assert with_token not in (401, 429), where
            assert with_token < 500, where


@pytest.mark.parametrize("path", ["/openapi.json", "/docs/", "/docs/openapi.json"])
def test_the_api_document_and_its_ui_are_public(daemon: DaemonProcess, path: str) -> None:
    assert httpx.get(daemon.url + path, timeout=10).status_code == 200


def test_an_unknown_api_path_is_401_without_a_token_and_404_with_one(
    daemon: DaemonProcess,
) -> None:
    url = f"{daemon.url}/api/no/such/thing"
    assert httpx.get(url, headers=client_ip(), timeout=10).status_code == 401
    assert httpx.get(url, headers={**daemon.headers, **client_ip()}, timeout=10).status_code == 404


def test_a_wrong_token_is_401_naming_the_error_and_logged_with_the_request_id(
    daemon: DaemonProcess,
) -> None:
    headers = {"Authorization": "Bearer nope", "X-Request-ID": "trace-auth-1", **client_ip()}
    response = httpx.get(f"{daemon.url}/api/tasks", headers=headers, timeout=10)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["detail"] == "invalid bearer token"
    assert response.headers["x-request-id"] == "trace-auth-1"
    assert re.search(r"\[trace-auth-1\].*invalid bearer token", daemon.log())


def test_wrong_tokens_never_lock_out_a_valid_one_from_the_same_address(
    daemon: DaemonProcess,
) -> None:
    address = client_ip()
    wrong = {"Authorization": "Bearer guess", **address}
    url = f"{daemon.url}/api/tasks"
    statuses = [httpx.get(url, headers=wrong, timeout=10).status_code for _ in range(50)]
    assert statuses == [401] * 10 + [429] * 40

    assert httpx.get(url, headers={**daemon.headers, **address}, timeout=10).status_code == 200
    limited = httpx.get(url, headers=wrong, timeout=10)
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["title"] == "Too Many Requests"
    # No token is no failure: always the 401 that says so.
    assert httpx.get(url, headers=address, timeout=10).status_code == 401
    # Another address, and the public routes, are not affected.
    other = {"Authorization": "Bearer guess", **client_ip()}
    assert httpx.get(url, headers=other, timeout=10).status_code == 401
    assert httpx.get(f"{daemon.url}/health", headers=wrong, timeout=10).is_success


def test_hash_token_prints_the_sha256_line_from_an_argument_or_stdin() -> None:
    expected = "sha256:" + hashlib.sha256(b"tok-1").hexdigest()
    assert runwarden("hash-token", "tok-1").stdout.strip() == expected
    assert runwarden("hash-token", stdin="tok-1\n").stdout.strip() == expected


def test_hash_token_takes_a_token_that_starts_with_a_dash() -> None:
    # Not one of ours any more, but tokens made elsewhere can still look like options.
    expected = "sha256:" + hashlib.sha256(b"-H99OD-x").hexdigest()
    for args, stdin in [(["-H99OD-x"], ""), (["--", "-H99OD-x"], ""), ([], "-H99OD-x\n")]:
        result = runwarden("hash-token", *args, stdin=stdin)
        assert (result.returncode, result.stdout.strip()) == (0, expected), args
    assert runwarden("hash-token", "-a", "-b").returncode == 2  # still one token at most


def test_a_plain_token_in_the_config_is_a_validate_error_pointing_at_hash_token(
    tmp_path: Path,
) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text('[api]\ntokens = ["hunter2"]\n\n[tasks.a]\nrun = "true"\n')
    result = runwarden("validate", str(config))
    assert result.returncode == 1
    assert "runwarden hash-token" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_hashed_token_from_the_config_file_is_accepted(database_url: str, tmp_path: Path) -> None:
    hashed = runwarden("hash-token", "from-the-file").stdout.strip()
    config = tmp_path / "runwarden.toml"
    config.write_text(f'[api]\ntokens = ["{hashed}"]\n{CONFIG}')
    daemon = start_daemon(config, database_url, tmp_path, token=None)
    try:
        url = f"{daemon.url}/api/tasks"
        assert httpx.get(url, headers={"Authorization": "Bearer from-the-file"}).is_success
        assert httpx.get(url, headers={"Authorization": f"Bearer {hashed}"}).status_code == 401
    finally:
        daemon.terminate()


def test_auth_off_needs_no_token_and_says_so_at_start(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(CONFIG)
    daemon = start_daemon(config, database_url, tmp_path, {"RUNWARDEN_AUTH": "off"}, token=None)
    try:
        assert httpx.get(f"{daemon.url}/api/tasks", timeout=10).is_success
        assert "authentication is OFF" in daemon.log()
    finally:
        daemon.terminate()


def test_without_any_token_one_is_generated_printed_once_and_accepted(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(CONFIG)
    daemon = start_daemon(config, database_url, tmp_path, token=None)
    try:
        printed = re.findall(r"generated one for this run: (\S+)", daemon.log())
        assert len(printed) == 1
        assert printed[0].startswith("rw_")
        hint = re.search(r"the line `(runwarden hash-token -- TOKEN)` prints", daemon.log())
        assert hint is not None
        url = f"{daemon.url}/api/tasks"
        assert httpx.get(url, timeout=10).status_code == 401
        ok = httpx.get(url, headers={"Authorization": f"Bearer {printed[0]}"}, timeout=10)
        assert ok.is_success
    finally:
        daemon.terminate()
