"""Limits on the request head, enforced by the HTTP parser before any handler runs.

uvicorn has none with httptools (``h11_max_incomplete_event_size`` is for h11 only), and an
ASGI app sees a request only once its whole head has been read into memory: a client could
send a 100 MB header. :class:`LimitedHttpToolsProtocol` counts the head as it is parsed and
answers 414 (request line over 8 KiB) or 431 (header lines over 64 KiB in all) at once,
then closes the connection; the app never sees the request.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.security import ALWAYS_HEADERS, encode_problem

log = logging.getLogger("runwarden.http")

MAX_REQUEST_LINE = 8 * 1024
"""Bytes of ``METHOD target HTTP/1.1`` (without the CRLF); more is a 414."""
MAX_HEADER_BYTES = 64 * 1024
"""Bytes of all header lines (``Name: value`` and CRLF each); more is a 431."""
LINGER_SECONDS = 2.0
"""How long a refused connection's further bytes are drained before it is closed."""
_MAX_HEAD = MAX_REQUEST_LINE + MAX_HEADER_BYTES + 2
_VERSION = len(" HTTP/1.1")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing an oversized request head as it arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: tuple[int, str] | None = None
        self._in_head = True
        self._messages = 0
        self._header_bytes = 0
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # answered: the rest of the request is dropped until the connection closes
        messages = self._messages
        super().data_received(data)
        if self._refusal is None and self._in_head and self._messages == messages:
            # The whole chunk is head. The parser hands over a header line only once it is
            # complete, so a single endless line is caught here, by the raw bytes.
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self._refusal = 431, f"the request head is over {_MAX_HEAD} bytes"
        if self._refusal is not None:
            self._refuse(*self._refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        self._in_head = True
        self._header_bytes = self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        if self._refusal is not None:
            return
        super().on_url(url)
        line = len(self.parser.get_method()) + 1 + len(self.url) + _VERSION
        if line > MAX_REQUEST_LINE:
            detail = f"the request line is over {MAX_REQUEST_LINE} bytes; shorten the query"
            self._refusal = 414, detail

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refusal is not None or not self._in_head:
            return
        self._header_bytes += len(name) + len(value) + 4  # "Name: value\r\n"
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refusal = 431, f"the request headers are over {MAX_HEADER_BYTES} bytes in all"
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refusal is None:
            super().on_headers_complete()  # only now does the app get the request

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            super().on_message_complete()

    def _refuse(self, status: int, detail: str) -> None:
        client = self.client[0] if self.client else "unknown"
        log.warning("refused a request from %s with %d: %s", client, status, detail)
        host, port = self.server or ("127.0.0.1", None)
        host = f"[{host}]" if ":" in host else host  # IPv6
        base_url = f"{self.scheme}://{host}" + (f":{port}" if port else "")
        body = encode_problem(base_url, status, detail)
        head = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *ALWAYS_HEADERS):
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        # A lingering close: closing with the client's bytes unread would reset the
        # connection, and a client still sending its head could lose the answer with it.
        # Its further bytes are read and dropped (data_received) until it closes, or we do.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
