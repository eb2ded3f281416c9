"""A scripted webhook receiver on 127.0.0.1 for notification tests.

Each path answers from its own script, one entry per request (the last entry repeats):
a status, headers, and optionally a hang (it holds the request until ``release`` or the
hang's seconds pass). Every request is recorded with its headers and body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    """Seconds to hold the request before answering (released early by ``release``)."""


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """The server's state: scripts per path, requests per path."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.url = ""

    def script(self, path: str, *answers: Answer) -> str:
        """Answer requests to ``path`` with ``answers`` in turn; returns its URL."""
        with self.lock:
            self.scripts[path] = list(answers)
        return self.url + path

    def release(self) -> None:
        """Let every hanging request answer now."""
        self.gate.set()

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        """The requests to ``path`` once there are at least ``count`` (fails after
        ``timeout`` seconds: a bound on a hang, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.at(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} requests, expected {count}")

    def answer_for(self, path: str) -> Answer:
        with self.lock:
            script = self.scripts.get(path, [Answer(404)])
            return script.pop(0) if len(script) > 1 else script[0]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
            answer = receiver.answer_for(self.path)
            if answer.hang:
                receiver.gate.wait(answer.hang)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except OSError:
                pass  # the sender gave up (timeout) or died

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver serving on 127.0.0.1 (a free port) until the block ends."""
    state = Receiver()
    # A deep listen queue: a burst of senders must not find the door shut (the default 5).
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release()
        server.shutdown()
        server.server_close()
        thread.join(10)
