"""Session cookies, origins and CSRF at the middleware; the session gate; live tokens."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from adapters.memory_sessions import InMemorySessionStore
from app import browser_auth
from app.auth_limit import FailureLimiter
from app.security import LiveTokens, SecurityMiddleware, SecurityOptions, TokenSet, hash_token
from app.sessions import SessionGate, cookie_header, csrf_token_of, decode_id, session_key
from app.ui import render
from domain.errors import StoreUnavailable

TOKEN = "rw_unit_token"
HOST = "127.0.0.1:9477"


def _scope(
    path: str = "/api/tasks",
    method: str = "GET",
    scheme: str = "http",
    query: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    raw = [(b"host", HOST.encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 9477),
        "headers": raw,
    }


@pytest.mark.parametrize(
    ("scheme", "headers", "same"),
    [
        ("http", {"Origin": f"http://{HOST}"}, True),
        ("http", {"Origin": f"HTTP://{HOST}"}, True),
        ("http", {"Origin": f"https://{HOST}"}, False),
        ("http", {"Origin": "http://127.0.0.1:9478"}, False),
        ("http", {"Origin": "http://evil.example"}, False),
        ("http", {"Origin": "null"}, False),
        ("http", {"Referer": f"http://{HOST}/ui/tasks?x=1"}, True),
        ("http", {"Referer": "http://evil.example/ui/"}, False),
        # Origin wins over Referer when both are there.
        ("http", {"Origin": "http://evil.example", "Referer": f"http://{HOST}/"}, False),
        ("http", {}, False),
        ("https", {"Origin": f"https://{HOST}"}, True),
    ],
)
def test_same_origin_is_the_request_scheme_and_host(
    scheme: str, headers: dict[str, str], same: bool
) -> None:
    assert browser_auth.is_same_origin(_scope(scheme=scheme, headers=headers)) is same


def test_default_ports_are_the_same_origin_written_or_not() -> None:
    scope = _scope(scheme="https", headers={"Origin": "https://rw.example"})
    scope["headers"][0] = (b"host", b"rw.example:443")
    assert browser_auth.is_same_origin(scope)
    scope["headers"][0] = (b"host", b"rw.example:8443")
    assert not browser_auth.is_same_origin(scope)


def test_the_session_cookie_is_found_among_others() -> None:
    cookie = {"Cookie": 'runwarden_zone=utc; runwarden_session="abc"; x=y'}
    assert browser_auth.session_cookie(_scope(headers=cookie)) == "abc"
    assert browser_auth.session_cookie(_scope(headers={"Cookie": "runwarden_session="})) is None
    assert browser_auth.session_cookie(_scope()) is None


def test_the_login_location_carries_the_page_asked_for_only_on_a_page_load() -> None:
    scope = _scope("/ui/runs", query=b"status=failed&limit=5")
    assert browser_auth.login_location(scope) == (
        "/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dfailed%26limit%3D5"
    )
    assert browser_auth.login_location(_scope("/ui/logout", "POST")) == "/ui/login"
    rooted = {**_scope("/rw/ui/"), "root_path": "/rw"}
    assert browser_auth.login_location(rooted) == "/rw/ui/login?next=%2Frw%2Fui%2F"


def _receiver(*chunks: bytes) -> Any:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


async def _drain(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def test_a_form_field_is_read_and_the_body_replayed_whole() -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    receive = _receiver(b"a=1&csrf_to", b"ken=t%2Bk&b=2")
    value, replay = await browser_auth.form_field(_scope(headers=form), receive, "csrf_token")
    assert value == "t+k"
    assert await _drain(replay) == b"a=1&csrf_token=t%2Bk&b=2"


async def test_a_form_field_is_not_looked_for_in_other_bodies() -> None:
    receive = _receiver(b'{"csrf_token": "t"}')
    value, replay = await browser_auth.form_field(
        _scope(headers={"Content-Type": "application/json"}), receive, "csrf_token"
    )
    assert value is None
    assert await _drain(replay) == b'{"csrf_token": "t"}'
    big = [b"csrf_token=t&", b"x" * browser_auth.MAX_FORM_BYTES, b"y" * 10]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    value, replay = await browser_auth.form_field(
        _scope(headers=form), _receiver(*big), "csrf_token"
    )
    assert value is None
    assert await _drain(replay) == b"".join(big)


def test_the_middleware_and_the_pages_agree_on_the_scope_key() -> None:
    assert browser_auth.SESSION_CSRF == render.SESSION_CSRF


def test_session_ids_keys_and_csrf_tokens() -> None:
    raw = bytes(range(32))
    session_id = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert decode_id(session_id) == raw
    assert decode_id(session_id + "A") is None
    assert decode_id("!" * 43) is None
    assert session_key(raw) == hashlib.sha256(raw).digest()
    assert csrf_token_of(raw) != session_key(raw).hex()
    assert csrf_token_of(raw) == csrf_token_of(raw) != csrf_token_of(bytes(32))
    assert cookie_header("v", secure=False) == (
        "runwarden_session=v; Path=/; Max-Age=86400; HttpOnly; SameSite=Strict"
    )
    assert cookie_header("", secure=True, max_age=0).endswith(
        "Max-Age=0; HttpOnly; SameSite=Strict; Secure"
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _gate(tokens: LiveTokens | None = None) -> tuple[SessionGate, InMemorySessionStore, _Clock]:
    clock = _Clock()
    gate = SessionGate(tokens or LiveTokens(TokenSet.build([TOKEN])), FailureLimiter(), clock=clock)
    store = InMemorySessionStore()
    gate.attach(store)
    return gate, store, clock


async def test_a_session_is_opened_only_for_an_accepted_token_and_stored_as_digests() -> None:
    gate, store, _ = _gate()
    assert await gate.open("wrong") is None
    assert store.rows == {}
    session_id = await gate.open(TOKEN)
    assert session_id is not None
    raw = decode_id(session_id)
    assert raw is not None
    assert list(store.rows) == [session_key(raw)]
    assert store.rows[session_key(raw)][0] == hashlib.sha256(TOKEN.encode()).digest()
    assert await gate.csrf_token(session_id) == csrf_token_of(raw)
    assert await gate.csrf_token("not-a-session") is None


async def test_a_lookup_is_cached_briefly_but_a_logout_here_is_at_once() -> None:
    gate, store, clock = _gate()
    mine, theirs = await gate.open(TOKEN), await gate.open(TOKEN)
    assert mine is not None
    assert theirs is not None
    assert await gate.csrf_token(mine)
    assert await gate.csrf_token(theirs)
    await gate.close(mine)
    assert await gate.csrf_token(mine) is None
    # Another node's logout: this node believes its cache for a moment, then the store.
    raw = decode_id(theirs)
    assert raw is not None
    await store.delete(session_key(raw))
    assert await gate.csrf_token(theirs)
    clock.now += 2.1
    assert await gate.csrf_token(theirs) is None


async def test_a_session_dies_with_its_token_when_a_reload_drops_it() -> None:
    config = (hash_token(TOKEN),)
    live = LiveTokens(TokenSet.build(["from-env"], config))
    current = {"tokens": config}
    live.follow(lambda: current["tokens"])
    gate, _, _ = _gate(live)
    session_id = await gate.open(TOKEN)
    env_session = await gate.open("from-env")
    assert session_id is not None
    assert env_session is not None
    assert await gate.csrf_token(session_id)
    current["tokens"] = ()  # a reload without it: cached or not, refused at once
    assert await gate.csrf_token(session_id) is None
    assert not gate.tokens().matches(TOKEN)
    assert await gate.csrf_token(env_session)  # the environment's token stays
    current["tokens"] = (hash_token("new"),)
    assert gate.tokens().matches("new")


async def _call(gate: SessionGate, scope: dict[str, Any], body: bytes = b"") -> Any:
    """Status, headers and what the app saw, through a middleware using ``gate``."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["csrf"] = scope.get(browser_auth.SESSION_CSRF)
        seen["body"] = await _drain(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    options = SecurityOptions(TokenSet.build([TOKEN]))
    middleware = SecurityMiddleware(app, options, FailureLimiter(), sessions=gate)
    await middleware(scope, _receiver(body), send)
    return messages[0]["status"], dict(messages[0]["headers"]), seen


async def test_the_middleware_takes_a_session_and_guards_its_unsafe_requests() -> None:
    gate, _, _ = _gate()
    session_id = await gate.open(TOKEN)
    assert session_id is not None
    csrf = await gate.csrf_token(session_id)
    cookie = {"Cookie": f"runwarden_session={session_id}"}
    same = {**cookie, "Origin": f"http://{HOST}"}

    status, _, seen = await _call(gate, _scope(headers=cookie))
    assert (status, seen["csrf"]) == (200, csrf)
    status, headers, _ = await _call(gate, _scope("/ui/tasks"))
    assert (status, headers[b"location"]) == (303, b"/ui/login?next=%2Fui%2Ftasks")
    status, _, _ = await _call(gate, _scope("/api/tasks/a/run", "POST", headers=same))
    assert status == 403
    odd = _scope("/api/tasks/a/run", "POST", headers=same)
    odd["headers"].append((b"x-csrf-token", "é€".encode()))
    assert (await _call(gate, odd))[0] == 403
    post = _scope("/api/tasks/a/run", "POST", headers={**same, "X-CSRF-Token": csrf or ""})
    assert (await _call(gate, post))[0] == 200
    # A dashboard form's csrf_token field, read and replayed to the handler.
    form = {**same, "Content-Type": "application/x-www-form-urlencoded"}
    body = f"csrf_token={csrf}&x=1".encode()
    status, _, seen = await _call(gate, _scope("/ui/logout", "POST", headers=form), body)
    assert (status, seen["body"]) == (200, body)
    status, headers, _ = await _call(
        gate, _scope("/ui/logout", "POST", headers=form), b"csrf_token=nope"
    )
    assert status == 403
    assert headers[b"content-type"].startswith(b"text/html")
    # The form field counts only on dashboard paths.
    status, _, _ = await _call(gate, _scope("/api/reload", "POST", headers=form), body)
    assert status == 403
    # A bearer token needs neither, and is still checked as before.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await _call(gate, _scope("/api/reload", "POST", headers=bearer)))[0] == 200
    wrong = {**same, "Authorization": "Bearer wrong", "X-CSRF-Token": csrf or ""}
    assert (await _call(gate, _scope("/api/tasks", headers=wrong)))[0] == 401


async def test_dashboard_pages_send_a_same_origin_referrer_policy() -> None:
    gate, _, _ = _gate()
    _, ui, _ = await _call(gate, _scope("/ui/login"))
    _, api, _ = await _call(
        gate, _scope("/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
    )
    assert ui[b"referrer-policy"] == b"same-origin"
    assert api[b"referrer-policy"] == b"no-referrer"


async def test_a_session_lookup_without_the_database_is_a_503_not_a_crash() -> None:
    class Down(InMemorySessionStore):
        async def token_of(self, key: bytes) -> bytes | None:
            raise StoreUnavailable("database unavailable: test")

    gate, _, _ = _gate()
    gate.attach(Down())
    cookie = {"Cookie": f"runwarden_session={'A' * 43}"}
    status, headers, _ = await _call(gate, _scope("/ui/", headers=cookie))
    assert status == 503
    assert headers[b"content-type"] == b"application/problem+json"


def test_require_csrf_checks_only_cookie_authenticated_unsafe_requests() -> None:
    from litestar import Request
    from litestar.exceptions import PermissionDeniedException

    from app.ui.csrf import require_csrf

    def request(method: str, csrf: str | None, **headers: str) -> Request[Any, Any, Any]:
        scope = _scope("/ui/tasks/a/run", method, headers=headers)
        if csrf is not None:
            scope[browser_auth.SESSION_CSRF] = csrf
        return Request(scope)  # type: ignore[arg-type]

    require_csrf(request("POST", None))  # bearer token or auth off
    require_csrf(request("GET", "t"))
    require_csrf(request("POST", "t", **{"X-CSRF-Token": "t"}))
    require_csrf(request("POST", "t"), {"csrf_token": "t"})
    for bad in (request("POST", "t"), request("POST", "t", **{"X-CSRF-Token": "u"})):
        with pytest.raises(PermissionDeniedException, match="CSRF"):
            require_csrf(bad, {"csrf_token": "u"})
