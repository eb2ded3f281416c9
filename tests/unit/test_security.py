"""Tokens, the auth-failure limiter, proxy resolution and the middleware, without a server."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.auth_limit import FailureLimiter
from app.config import ConfigError, validate_text
from app.security import (
    REQUEST_ID,
    TOKEN_BYTES,
    AuthSetupError,
    RequestIdFilter,
    SecurityMiddleware,
    SecurityOptions,
    TokenSet,
    hash_token,
    new_token,
    resolve_tokens,
)
from app.urls import ProxyResolver, normalise_root_path, parse_networks

TOKEN = "s3cret-token"


def test_hash_token_is_the_sha256_hex_of_the_token() -> None:
    assert hash_token(TOKEN) == "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()


def test_a_token_set_accepts_plain_and_hashed_tokens_and_nothing_else() -> None:
    tokens = TokenSet.build(["from-env"], [hash_token(TOKEN)])
    assert tokens.matches("from-env")
    assert tokens.matches(TOKEN)
    assert not tokens.matches("s3cret-toke")
    assert not tokens.matches("")
    assert not TokenSet().matches("")


def test_config_tokens_must_be_hashed_and_are_kept_as_hashes() -> None:
    config = validate_text(f'[api]\ntokens = ["{hash_token(TOKEN)}"]\n', "rw.toml")
    assert TokenSet.build(hashed=config.api_tokens).matches(TOKEN)
    with pytest.raises(ConfigError, match="hash-token") as error:
        validate_text('[api]\ntokens = ["plain-text"]\n', "rw.toml")
    assert "plain-text" not in str(error.value)  # the secret is not echoed into logs


def test_metrics_public_is_read_from_the_api_table() -> None:
    assert validate_text("[api]\nmetrics_public = true\n", "rw.toml").metrics_public
    assert not validate_text("", "rw.toml").metrics_public


@given(st.binary(min_size=TOKEN_BYTES, max_size=TOKEN_BYTES))
def test_a_new_token_never_starts_with_a_dash_and_carries_all_256_random_bits(
    random: bytes,
) -> None:
    asked: list[int] = []

    def random_bytes(n: int) -> bytes:
        asked.append(n)
        return random

    token = new_token(random_bytes)

    assert asked == [32]  # 256 bits
    assert not token.startswith("-")
    assert re.fullmatch(r"rw_[A-Za-z0-9_-]{43}", token)
    # Nothing is lost: the token gives back every random byte it was made of.
    assert base64.urlsafe_b64decode(token.removeprefix("rw_") + "=") == random


def test_without_configured_tokens_one_is_generated_and_accepted() -> None:
    tokens, generated = resolve_tokens((), {})
    assert generated is not None
    assert len(generated) >= 40
    assert tokens is not None
    assert tokens.matches(generated)


def test_env_tokens_are_comma_separated_and_configured_tokens_add_to_them() -> None:
    tokens, generated = resolve_tokens([hash_token("c")], {"RUNWARDEN_API_TOKENS": " a, b ,"})
    assert generated is None
    assert tokens is not None
    assert all(tokens.matches(t) for t in ("a", "b", "c"))
    assert len(tokens) == 3


def test_auth_off_means_no_tokens_and_unknown_switch_values_are_refused() -> None:
    assert resolve_tokens([hash_token("c")], {"RUNWARDEN_AUTH": "OFF"}) == (None, None)
    with pytest.raises(AuthSetupError):
        resolve_tokens((), {"RUNWARDEN_AUTH": "maybe"})


def test_root_paths_are_normalised_and_unsafe_ones_refused() -> None:
    assert normalise_root_path("runwarden/") == "/runwarden"
    assert normalise_root_path("/") == ""
    for bad in ("/a/../b", "/a b", "/x?y"):
        with pytest.raises(ValueError, match="root path"):
            normalise_root_path(bad)


def test_trusted_proxies_parse_ips_and_cidrs() -> None:
    resolver = ProxyResolver(parse_networks("10.0.0.0/8, ::1"))
    assert resolver.is_trusted("10.1.2.3")
    assert resolver.is_trusted("::1")
    assert not resolver.is_trusted("192.168.0.1")
    assert not resolver.is_trusted("nonsense")
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_networks("10.0.0.1,not-an-ip")


def _scope(path: str = "/api/tasks", peer: str = "127.0.0.1", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "client": (peer, 5000),
        "server": ("127.0.0.1", 9477),
        "headers": [(b"host", b"127.0.0.1:9477")]
        + [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }


def test_forwarded_headers_count_only_from_a_trusted_peer() -> None:
    resolver = ProxyResolver(parse_networks("127.0.0.1"))
    forwarded = {"X_Forwarded_Proto": "https", "X_Forwarded_Host": "proxy.example"}
    untrusted = _scope(peer="192.0.2.7", **forwarded)
    resolver.apply(untrusted, "")
    assert untrusted["scheme"] == "http"
    assert (b"host", b"proxy.example") not in untrusted["headers"]
    trusted = _scope(X_Forwarded_For="198.51.100.1, 127.0.0.1", **forwarded)
    resolver.apply(trusted, "/rw")
    assert trusted["scheme"] == "https"
    assert (b"host", b"proxy.example") in trusted["headers"]
    assert trusted["client"][0] == "198.51.100.1"  # the first hop from the right not ours
    assert (trusted["root_path"], trusted["path"]) == ("/rw", "/rw/api/tasks")


def test_a_path_that_already_carries_the_root_path_is_not_prefixed_twice() -> None:
    scope = _scope(path="/rw/api/tasks")
    ProxyResolver().apply(scope, "/rw")
    assert scope["path"] == "/rw/api/tasks"


async def _call(
    middleware: SecurityMiddleware, scope: dict[str, Any]
) -> tuple[int, dict[bytes, bytes], bytes]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await middleware(scope, receive, send)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], dict(start["headers"]), body


def _streaming_app(seen: list[str]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(REQUEST_ID.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    return app


async def test_a_valid_token_passes_and_the_request_id_is_echoed_and_seen_by_the_app() -> None:
    seen: list[str] = []
    middleware = SecurityMiddleware(_streaming_app(seen), SecurityOptions(TokenSet.build([TOKEN])))
    status, headers, body = await _call(
        middleware, _scope(Authorization=f"Bearer {TOKEN}", X_Request_ID="abc.123")
    )
    assert (status, body, seen) == (200, b"ab", ["abc.123"])
    assert headers[b"x-request-id"] == b"abc.123"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-frame-options"] == b"DENY"
    assert REQUEST_ID.get() == "-"  # reset after the request


async def test_an_insane_request_id_is_replaced_by_a_generated_one() -> None:
    seen: list[str] = []
    middleware = SecurityMiddleware(_streaming_app(seen), SecurityOptions(None))
    _, headers, _ = await _call(middleware, _scope(X_Request_ID="x" * 101))
    assert headers[b"x-request-id"].decode() == seen[0] != "x" * 101


async def test_a_valid_token_passes_however_many_wrong_ones_its_address_sent() -> None:
    options = SecurityOptions(TokenSet.build([TOKEN]))
    middleware = SecurityMiddleware(_streaming_app([]), options, FailureLimiter(max_failures=10))
    statuses = [
        (await _call(middleware, _scope(Authorization="Bearer wrong")))[0] for _ in range(50)
    ]
    assert statuses == [401] * 10 + [429] * 40

    status, _, _ = await _call(middleware, _scope(Authorization=f"Bearer {TOKEN}"))
    assert status == 200
    status, headers, body = await _call(middleware, _scope(Authorization="Bearer wrong"))
    assert status == 429
    assert 1 <= int(headers[b"retry-after"]) <= 60
    assert b'"title":"Too Many Requests"' in body
    # No credential is no failure: a 401 that says what is missing, every time.
    status, headers, _ = await _call(middleware, _scope())
    assert status == 401
    assert headers[b"www-authenticate"] == b'Bearer realm="runwarden"'
    # Another address is not affected.
    status, _, _ = await _call(middleware, _scope(peer="10.9.9.9", Authorization="Bearer wrong"))
    assert status == 401


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/health", True),
        ("/docs/", True),
        ("/docs/openapi.json", True),
        ("/schemas/Run.json", True),
        ("/metrics", False),
        ("/docs/../api/tasks", False),
        ("//health", False),
        ("/favicon.ico", False),
    ],
)
async def test_only_the_listed_public_paths_answer_without_a_token(path: str, public: bool) -> None:
    middleware = SecurityMiddleware(_streaming_app([]), SecurityOptions(TokenSet.build([TOKEN])))
    status, _, _ = await _call(middleware, _scope(path=path))
    assert status == (200 if public else 401)


async def test_metrics_can_be_made_public() -> None:
    options = SecurityOptions(TokenSet.build([TOKEN]), metrics_public=True)
    status, _, _ = await _call(SecurityMiddleware(_streaming_app([]), options), _scope("/metrics"))
    assert status == 200


def test_the_log_filter_stamps_the_current_request_id() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    reset = REQUEST_ID.set("req-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(reset)
    assert record.request_id == "req-1"
