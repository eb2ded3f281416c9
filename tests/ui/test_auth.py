"""Dashboard login on real daemons: the form, the session cookie, CSRF, two nodes, logout."""

from __future__ import annotations

import hashlib
import secrets
import urllib.parse
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import asyncpg
import httpx
import pytest
from bs4 import BeautifulSoup

from adapters.postgres.embedded import run_coroutine
from app.sessions import decode_id
from tests.support.daemon import DaemonProcess, start_daemon, wait_for

TOKEN = "rw_" + secrets.token_urlsafe(32)
"""The environment's token (RUNWARDEN_API_TOKENS) of the two module daemons."""
FILE_TOKEN = "rw_" + secrets.token_urlsafe(32)
"""A token from ``[api] tokens`` (stored as its hash)."""
TASKS = """
[tasks.alpha]
run = "echo alpha"
"""
CONFIG = f'[api]\ntokens = ["sha256:{hashlib.sha256(FILE_TOKEN.encode()).hexdigest()}"]\n{TASKS}'
MAX_FAILURES = 3
COOKIE = "runwarden_session"
_addresses = count(1)


def client_ip() -> dict[str, str]:
    """A distinct client address per call, told by the trusted proxy (127.0.0.1): the
    failures of one test do not rate limit another."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"203.0.{n // 250}.{n % 250 + 1}"}


def _start(
    database_url: str, workdir: Path, config_text: str = CONFIG, **kw: object
) -> DaemonProcess:
    config = workdir / "runwarden.toml"
    config.write_text(config_text)
    return start_daemon(config, database_url, workdir, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def node_a(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    env = {
        "RUNWARDEN_TRUSTED_PROXIES": "127.0.0.1",
        "RUNWARDEN_AUTH_MAX_FAILURES": str(MAX_FAILURES),
    }
    daemon = _start(module_database_url, tmp_path_factory.mktemp("a"), extra_env=env, token=TOKEN)
    try:
        yield daemon
    finally:
        daemon.terminate()


@pytest.fixture(scope="module")
def node_b(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    daemon = _start(module_database_url, tmp_path_factory.mktemp("b"), token=TOKEN)
    try:
        yield daemon
    finally:
        daemon.terminate()


def browser(daemon: DaemonProcess) -> httpx.Client:
    """A client with no token that follows no redirect: what a browser sends, by hand."""
    return httpx.Client(base_url=daemon.url, timeout=30, follow_redirects=False)


def login(
    daemon: DaemonProcess,
    token: str = TOKEN,
    next_path: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``POST /ui/login`` from the login page of ``daemon``."""
    with browser(daemon) as client:
        return client.post(
            "/ui/login",
            data={"token": token, "next": next_path},
            headers={"Origin": daemon.url, **client_ip(), **(headers or {})},
        )


def session_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    name, _, value = response.headers["set-cookie"].split(";")[0].partition("=")
    assert name == COOKIE
    assert value
    return value


def logged_in(daemon: DaemonProcess, token: str = TOKEN) -> dict[str, str]:
    """The ``Cookie`` header of a fresh session."""
    return {"Cookie": f"{COOKIE}={session_of(login(daemon, token))}"}


def stored_sessions(database_url: str) -> list[tuple[bytes, bytes]]:
    """(key, token_digest) of every row of ``ui_sessions``."""

    async def rows() -> list[tuple[bytes, bytes]]:
        connection = await asyncpg.connect(database_url)
        try:
            found = await connection.fetch("SELECT key, token_digest FROM ui_sessions")
        finally:
            await connection.close()
        return [(bytes(r["key"]), bytes(r["token_digest"])) for r in found]

    return run_coroutine(rows)


def key_of(cookie: dict[str, str]) -> bytes:
    raw = decode_id(cookie["Cookie"].partition("=")[2])
    assert raw is not None
    return hashlib.sha256(raw).digest()


def csrf_of(daemon: DaemonProcess, cookie: dict[str, str]) -> str:
    with browser(daemon) as client:
        page = client.get("/ui/", headers=cookie)
    assert page.status_code == 200
    meta = BeautifulSoup(page.text, "html.parser").find("meta", {"name": "runwarden-csrf"})
    assert meta is not None
    token = str(meta["content"])
    assert len(token) >= 40
    return token


def test_the_login_page_is_a_password_form_for_the_api_token(node_a: DaemonProcess) -> None:
    with browser(node_a) as client:
        page = client.get("/ui/login", params={"next": "/ui/runs?status=failed"})
    assert page.status_code == 200
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.h1 is not None
    assert len(soup.find_all("h1")) == 1
    form = soup.find("form", {"action": "/ui/login"})
    assert form is not None
    assert form["method"] == "post"
    field = form.find("input", {"name": "token"})
    assert field["type"] == "password"
    label = soup.find("label", {"for": field["id"]})
    assert label is not None
    assert label.get_text(strip=True) == "API token"
    hidden = form.find("input", {"name": "next"})
    assert (hidden["type"], hidden["value"]) == ("hidden", "/ui/runs?status=failed")
    assert page.headers["cache-control"] == "no-store"
    with browser(node_a) as client:
        hostile = client.get("/ui/login", params={"next": '"><b id="injected">x'})
    soup = BeautifulSoup(hostile.text, "html.parser")
    assert soup.find(id="injected") is None
    assert soup.find("input", {"name": "next"})["value"] == '"><b id="injected">x'


def test_a_wrong_token_shows_the_form_again_with_401_and_never_echoes_it(
    node_a: DaemonProcess,
) -> None:
    wrong = "rw_wrong_" + secrets.token_urlsafe(16)
    response = login(node_a, wrong, "/ui/runs")
    assert response.status_code == 401
    assert "Invalid token" in response.text
    assert wrong not in response.text
    assert "set-cookie" not in response.headers
    assert wrong not in node_a.log()
    field = BeautifulSoup(response.text, "html.parser").find("input", {"name": "token"})
    assert not field.get("value")
    assert "/ui/runs" in response.text  # next is kept for the next try


def test_a_correct_token_sets_the_session_cookie_with_exactly_its_flags(
    node_a: DaemonProcess,
) -> None:
    response = login(node_a)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"
    cookie = response.headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert name_value.startswith(f"{COOKIE}=")
    assert sorted(attributes) == sorted(["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"])
    assert TOKEN not in cookie


def test_behind_a_trusted_proxy_saying_https_the_cookie_is_secure(node_a: DaemonProcess) -> None:
    origin = node_a.url.replace("http://", "https://")
    response = login(node_a, headers={"X-Forwarded-Proto": "https", "Origin": origin})
    assert response.status_code == 303
    attributes = [part.strip() for part in response.headers["set-cookie"].split(";")][1:]
    assert "Secure" in attributes
    assert "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes


def test_the_session_opens_pages_the_api_and_the_run_event_stream(node_a: DaemonProcess) -> None:
    cookie = logged_in(node_a)
    with browser(node_a) as client:
        page = client.get("/ui/", headers=cookie)
        assert page.status_code == 200
        soup = BeautifulSoup(page.text, "html.parser")
        assert soup.find("form", {"action": "/ui/logout"}) is not None
        tasks = client.get("/api/tasks", headers=cookie)
        assert tasks.status_code == 200
        assert [t["name"] for t in tasks.json()["tasks"]] == ["alpha"]
        with client.stream("GET", "/api/runs/stream", headers=cookie) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(stream.iter_bytes())
            assert first.startswith(b":")


def test_without_a_session_pages_go_to_the_login_form_and_the_api_says_401(
    node_a: DaemonProcess,
) -> None:
    with browser(node_a) as client:
        for cookie in ({}, {"Cookie": f"{COOKIE}=forged"}, {"Cookie": f"{COOKIE}={'A' * 43}"}):
            page = client.get("/ui/runs?status=failed&limit=5", headers=cookie)
            assert page.status_code == 303
            location = page.headers["location"]
            assert location == "/ui/login?next=" + urllib.parse.quote(
                "/ui/runs?status=failed&limit=5", safe=""
            )
            api = client.get("/api/tasks", headers=cookie)
            assert api.status_code == 401
            assert api.headers["content-type"] == "application/problem+json"
        # An htmx request would follow a 303 into a fragment: it is told to navigate.
        fragment = client.get("/ui/", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"] == "/ui/login?next=%2Fui%2F"


@pytest.mark.parametrize(
    ("asked", "landed"),
    [
        ("//evil.example/", "/ui/"),
        ("https://evil.example/", "/ui/"),
        ("/\\evil.example/", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
        ("/ui/runs?status=failed", "/ui/runs?status=failed"),
    ],
)
def test_after_login_only_same_origin_paths_are_followed(
    node_a: DaemonProcess, asked: str, landed: str
) -> None:
    response = login(node_a, next_path=asked)
    assert response.status_code == 303
    assert response.headers["location"] == landed


def test_a_login_post_from_another_origin_is_refused(node_a: DaemonProcess) -> None:
    for origin in ({"Origin": "https://evil.example"}, {"Origin": "null"}):
        response = login(node_a, headers=origin)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
    with browser(node_a) as client:  # neither Origin nor Referer
        response = client.post("/ui/login", data={"token": TOKEN}, headers=client_ip())
    assert response.status_code == 403


def test_a_cookie_post_from_another_origin_is_refused(node_a: DaemonProcess) -> None:
    cookie = logged_in(node_a)
    csrf = csrf_of(node_a, cookie)
    with browser(node_a) as client:
        before = client.get("/api/tasks/alpha/runs", headers=cookie).json()["total"]
        for origin in (
            {"Origin": "https://evil.example"},
            {"Referer": "https://evil.example/page"},
            {},
        ):
            response = client.post(
                "/api/tasks/alpha/run", headers={**cookie, **origin, "X-CSRF-Token": csrf}
            )
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            assert "cross-origin" in response.json()["detail"]
        after = client.get("/api/tasks/alpha/runs", headers=cookie).json()["total"]
    assert after == before  # nothing was triggered


def test_a_cookie_post_needs_the_csrf_token_too(node_a: DaemonProcess) -> None:
    cookie = logged_in(node_a)
    csrf = csrf_of(node_a, cookie)
    same = {**cookie, "Origin": node_a.url}
    with browser(node_a) as client:
        missing = client.post("/api/tasks/alpha/run", headers=same)
        assert missing.status_code == 403
        assert "CSRF" in missing.json()["detail"]
        wrong = client.post("/api/tasks/alpha/run", headers={**same, "X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        # Another session's token is no good either.
        other = csrf_of(node_a, logged_in(node_a))
        assert other != csrf
        assert (
            client.post("/api/tasks/alpha/run", headers={**same, "X-CSRF-Token": other}).status_code
            == 403
        )
        good = client.post("/api/tasks/alpha/run", headers={**same, "X-CSRF-Token": csrf})
        assert good.status_code == 201, good.text
        # Referer stands in for a missing Origin.
        by_referer = {**cookie, "Referer": f"{node_a.url}/ui/tasks", "X-CSRF-Token": csrf}
        assert client.post("/api/tasks/alpha/run", headers=by_referer).status_code == 201
        # A dashboard form without its csrf_token field gets a 403 page.
        form = client.post("/ui/logout", data={}, headers=same)
        assert form.status_code == 403
        assert form.headers["content-type"].startswith("text/html")
        assert "CSRF" in form.text
        # The session still works: nothing was logged out.
        assert client.get("/api/tasks", headers=cookie).status_code == 200


def test_a_bearer_token_post_needs_neither_origin_nor_csrf(node_a: DaemonProcess) -> None:
    with node_a.client() as client:
        assert client.post("/api/tasks/alpha/run").status_code == 201
        assert client.post(
            "/api/tasks/alpha/run", headers={"Origin": "https://x.example"}
        ).is_success


def test_a_session_opened_on_one_node_works_on_another_and_logout_ends_it_on_both(
    node_a: DaemonProcess, node_b: DaemonProcess, module_database_url: str
) -> None:
    cookie = logged_in(node_a)
    csrf = csrf_of(node_a, cookie)
    # Stored as digests only: of the session id and of the token.
    rows = dict(stored_sessions(module_database_url))
    assert rows[key_of(cookie)] == hashlib.sha256(TOKEN.encode()).digest()
    with browser(node_a) as on_a, browser(node_b) as on_b:
        assert on_b.get("/api/tasks", headers=cookie).status_code == 200
        page = on_b.get("/ui/", headers=cookie)
        assert page.status_code == 200
        assert f'content="{csrf}"' in page.text  # the same session, the same CSRF token
        out = on_a.post(
            "/ui/logout",
            data={"csrf_token": csrf},
            headers={**cookie, "Origin": node_a.url},
        )
        assert out.status_code == 303
        assert out.headers["location"] == "/ui/login"
        cleared = [part.strip() for part in out.headers["set-cookie"].split(";")]
        assert cleared[0] == f"{COOKIE}="
        assert "Max-Age=0" in cleared
        assert key_of(cookie) not in dict(stored_sessions(module_database_url))
        # At once on the node that logged out; on the other within its short cache.
        assert on_a.get("/api/tasks", headers=cookie).status_code == 401
        assert on_a.get("/ui/", headers=cookie).status_code == 303
        wait_for(lambda: on_b.get("/api/tasks", headers=cookie).status_code == 401, timeout=10)
        assert on_b.get("/ui/", headers=cookie).status_code == 303


def test_the_token_is_in_no_page_and_no_redirect(node_a: DaemonProcess) -> None:
    fetched: list[httpx.Response] = []
    fetched.append(login(node_a, next_path="/ui/"))
    fetched.append(login(node_a, TOKEN + "x"))
    cookie = {"Cookie": f"{COOKIE}={session_of(fetched[0])}"}
    with browser(node_a) as client:
        for path in ("/ui/login", "/ui/login?next=/ui/", "/ui/", "/ui/nope"):
            fetched.append(client.get(path, headers=cookie))
    assert fetched[2].status_code == 200
    for response in fetched:
        assert TOKEN not in response.text
        assert TOKEN not in str(response.headers)
        assert FILE_TOKEN not in response.text


def test_login_failures_are_rate_limited_together_with_the_api(node_a: DaemonProcess) -> None:
    address = client_ip()
    statuses = [login(node_a, "wrong", headers=address).status_code for _ in range(MAX_FAILURES)]
    assert statuses == [401] * MAX_FAILURES
    limited = login(node_a, "wrong", headers=address)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert f"Too many attempts; retry in {limited.headers['retry-after']} s" in limited.text
    # While limited, the form does not even check a token.
    assert login(node_a, TOKEN, headers=address).status_code == 429
    # API failures count towards the same limit.
    other = client_ip()
    with httpx.Client(base_url=node_a.url, timeout=30) as client:
        for _ in range(MAX_FAILURES):
            bad = {"Authorization": "Bearer wrong", **other}
            assert client.get("/api/tasks", headers=bad).status_code == 401
    assert login(node_a, "wrong", headers=other).status_code == 429


def test_a_session_of_a_file_token_dies_when_a_reload_drops_the_token(
    database_url: str, tmp_path: Path
) -> None:
    daemon = _start(database_url, tmp_path, token=TOKEN)
    try:
        cookie = logged_in(daemon, FILE_TOKEN)
        with browser(daemon) as client:
            assert client.get("/api/tasks", headers=cookie).status_code == 200
            (tmp_path / "runwarden.toml").write_text(TASKS)
            with daemon.client() as api:
                assert api.post("/api/reload").status_code == 200
            assert client.get("/api/tasks", headers=cookie).status_code == 401
            assert client.get("/ui/", headers=cookie).status_code == 303
            dropped = {"Authorization": f"Bearer {FILE_TOKEN}"}
            assert client.get("/api/tasks", headers=dropped).status_code == 401
        # The environment's token is not the config's: it stays.
        assert logged_in(daemon, TOKEN)
    finally:
        daemon.terminate()


def test_with_auth_off_there_is_no_login(database_url: str, tmp_path: Path) -> None:
    daemon = _start(database_url, tmp_path, TASKS, extra_env={"RUNWARDEN_AUTH": "off"}, token=None)
    try:
        with browser(daemon) as client:
            assert client.get("/ui/login").headers["location"] == "/ui/"
            page = client.get("/ui/")
            assert page.status_code == 200
            assert "Auth disabled" in page.text
            assert client.post("/ui/login", data={"token": "x"}).status_code == 303
    finally:
        daemon.terminate()


def test_under_a_root_path_login_and_its_redirects_keep_it(
    database_url: str, tmp_path: Path
) -> None:
    daemon = _start(database_url, tmp_path, args=["--root-path", "/rw"], token=TOKEN)
    try:
        with browser(daemon) as client:
            first = client.get("/rw/ui/runs")
            assert first.headers["location"] == "/rw/ui/login?next=%2Frw%2Fui%2Fruns"
            form = BeautifulSoup(client.get("/rw/ui/login").text, "html.parser").form
            assert form is not None
            assert form["action"] == "/rw/ui/login"
            done = client.post(
                "/rw/ui/login",
                data={"token": TOKEN, "next": "/rw/ui/runs"},
                headers={"Origin": daemon.url},
            )
            assert done.headers["location"] == "/rw/ui/runs"
            outside = client.post(
                "/rw/ui/login",
                data={"token": TOKEN, "next": "/elsewhere"},
                headers={"Origin": daemon.url},
            )
            assert outside.headers["location"] == "/rw/ui/"
    finally:
        daemon.terminate()
