"""Request head limits over real HTTP: 431 over 64 KiB of headers, 414 over 8 KiB of line.

Raw sockets, so the test controls every byte of the head (an HTTP client adds its own).
"""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlsplit

from app.http_limits import MAX_HEADER_BYTES, MAX_REQUEST_LINE
from tests.support.daemon import DaemonProcess, module_daemon

daemon = module_daemon('[tasks.alpha]\nrun = "true"\n', "http-limits")

Response = tuple[int, dict[str, str], bytes]


def _connect(daemon: DaemonProcess) -> socket.socket:
    address = urlsplit(daemon.url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def _read_response(sock: socket.socket) -> Response:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return int(status_line.split()[1]), headers, body


def exchange(daemon: DaemonProcess, raw: bytes) -> Response:
    with _connect(daemon) as sock:
        sock.sendall(raw)
        return _read_response(sock)


def request(target: bytes = b"/health", header_lines: list[bytes] | None = None) -> bytes:
    lines = [b"Host: 127.0.0.1", b"Connection: close", *(header_lines or [])]
    return (
        b"GET " + target + b" HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    )


def headers_of_size(total: int) -> list[bytes]:
    """Filler header lines that, with Host and Connection, make ``total`` bytes in all."""
    left = total - len(b"Host: 127.0.0.1\r\n") - len(b"Connection: close\r\n")
    lines = []
    while left > 0:
        size = min(left, 4000)
        if left - size and left - size < 10:  # the last line needs room for "X-n: v\r\n"
            size -= 10
        name = f"X-Filler-{len(lines)}".encode()
        lines.append(name + b": " + b"v" * (size - len(name) - 4))
        left -= size
    return lines


def assert_refused_before_the_app(response: Response, status: int, detail: str) -> None:
    code, headers, body = response
    assert code == status
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert "x-request-id" not in headers  # stamped by the app's middleware: it never ran
    problem = json.loads(body)
    assert (problem["status"], problem["type"]) == (status, "about:blank")
    assert detail in problem["detail"]
    assert problem["$schema"].endswith("/schemas/ErrorModel.json")


def test_headers_of_exactly_64_kib_are_served_and_one_byte_more_is_431(
    daemon: DaemonProcess,
) -> None:
    at_limit = request(header_lines=headers_of_size(MAX_HEADER_BYTES))
    assert exchange(daemon, at_limit)[0] == 200

    over = request(header_lines=headers_of_size(MAX_HEADER_BYTES + 1))
    assert_refused_before_the_app(exchange(daemon, over), 431, "headers are over 65536 bytes")


def test_one_100_kb_header_is_431(daemon: DaemonProcess) -> None:
    raw = request(b"/api/tasks", [b"Authorization: Bearer " + b"x" * 100_000])
    assert_refused_before_the_app(exchange(daemon, raw), 431, "over 65536 bytes")


def test_a_header_that_never_ends_is_refused_while_it_is_still_coming(
    daemon: DaemonProcess,
) -> None:
    with _connect(daemon) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        sent = 0
        # Keep sending until the answer comes; 4 MB without one would be a failure.
        while not select.select([sock], [], [], 0)[0]:
            assert sent < 4_000_000, "no answer to an endless header"
            sock.sendall(b"z" * 16384)
            sent += 16384
        response = _read_response(sock)
    assert_refused_before_the_app(response, 431, "the request head is over")


def test_a_request_line_of_exactly_8_kib_is_served_and_one_byte_more_is_414(
    daemon: DaemonProcess,
) -> None:
    fixed = len(b"GET /health? HTTP/1.1")
    at_limit = request(b"/health?" + b"q" * (MAX_REQUEST_LINE - fixed))
    assert exchange(daemon, at_limit)[0] == 200

    over = request(b"/health?" + b"q" * (MAX_REQUEST_LINE - fixed + 1))
    assert_refused_before_the_app(exchange(daemon, over), 414, "request line is over 8192 bytes")


def test_a_refused_request_does_not_spoil_the_one_before_it_on_the_connection(
    daemon: DaemonProcess,
) -> None:
    first = request().replace(b"Connection: close", b"Connection: keep-alive")
    second = request(header_lines=headers_of_size(MAX_HEADER_BYTES + 1))
    with _connect(daemon) as sock:
        sock.sendall(first)
        head = b""
        while b"\r\n\r\nOK" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ")
        sock.sendall(second)
        assert_refused_before_the_app(_read_response(sock), 431, "headers are over")
