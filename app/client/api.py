"""The daemon's API over HTTP (httpx), its failures turned into one-line messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, connect_sse

TIMEOUT = httpx.Timeout(30.0)
STREAM_TIMEOUT = httpx.Timeout(30.0, read=90.0)
"""A live log sends a keep-alive comment at least every 15 s: 90 s of silence is a dead link."""


class ClientError(Exception):
    """What went wrong, said for a person; the command exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(ClientError):
    """No answer from the daemon (refused, reset, timed out)."""


def segment(value: str) -> str:
    """``value`` as one URL path segment."""
    return quote(value, safe="")


class Api:
    """A daemon at ``url``, asked with ``token``."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, what: str, **options: Any) -> httpx.Response:
        """Send; return a 2xx response or raise :class:`ClientError` naming ``what``."""
        try:
            response = self.http.request(method, path, **options)
        except httpx.TransportError as error:
            raise self.unreachable(error) from None
        self.check(response, what)
        return response

    def json(self, method: str, path: str, what: str, **options: Any) -> Any:
        return self.request(method, path, what, **options).json()

    def run(self, run_id: str) -> dict[str, Any]:
        """``GET /api/runs/{id}``: the run, with the task name its other routes need."""
        found: dict[str, Any] = self.json("GET", f"/api/runs/{segment(run_id)}", f"run {run_id!r}")
        return found

    @contextmanager
    def events(self, path: str, what: str, last_event_id: str | None) -> Iterator[EventSource]:
        """An SSE stream, resumed after ``last_event_id`` when given."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        try:
            with connect_sse(
                self.http, "GET", path, headers=headers, timeout=STREAM_TIMEOUT
            ) as source:
                if not source.response.is_success:
                    source.response.read()
                    self.check(source.response, what)
                yield source
        except httpx.TransportError as error:
            raise self.unreachable(error) from None

    def unreachable(self, error: httpx.TransportError) -> Unreachable:
        reason = str(error) or type(error).__name__
        return Unreachable(
            f"cannot reach the daemon at {self.url} ({reason}); is it running? "
            "Give its address with --url or RUNWARDEN_URL"
        )

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise :class:`ClientError` for an error answer, with the server's own words."""
        if response.is_success:
            return
        status = response.status_code
        detail = problem_detail(response)
        if status == 401:
            hint = (
                "the daemon refused the token: check --token / RUNWARDEN_TOKEN"
                if self.token
                else "no token given: pass --token or set RUNWARDEN_TOKEN"
            )
            raise ClientError(
                f"401 Unauthorized: {hint} (a token from the daemon's RUNWARDEN_API_TOKENS, or "
                "the one it printed at start when none is configured)"
            )
        if status == 404:
            raise ClientError(f"not found: {what} ({detail})")
        phrase = _phrase(status)
        raise ClientError(f"{status} {phrase}" + (f": {detail}" if detail != phrase else ""))


def problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of a problem+json answer, with each field error; else the body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:300] or _phrase(response.status_code)
    if not isinstance(body, dict):
        return str(body)[:300]
    detail = str(body.get("detail") or body.get("title") or _phrase(response.status_code))
    errors = body.get("errors") or []
    fields = [
        f"{item.get('location', '?')}: {item.get('message', '')}"
        for item in errors
        if isinstance(item, dict)
    ]
    return f"{detail} ({'; '.join(fields)})" if fields else detail


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
