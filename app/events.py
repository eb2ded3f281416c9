"""Run lifecycle events as server-sent events (``GET /api/runs/stream``).

The events come from a :class:`domain.ports.RunEventSource` (PostgreSQL LISTEN/NOTIFY in
the daemon), so a stream on any daemon shows the runs of every daemon sharing the database.
Each event's ``data`` is the wire ``Run`` as it was right after the change; ``id`` is a
number increasing within the daemon, unique within a stream. There is no replay: a
reconnecting client gets the events from its reconnection on (``Last-Event-ID`` is
ignored) and, once it has seen ``: connected``, re-lists ``GET /api/runs`` to catch up.
When the daemon drops a stream (the client fell behind, the database feed was
interrupted, shutdown) it sends a last ``: disconnected: <why>`` comment first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from app.config import positive_from_env
from app.presenters import run_body
from domain.ports import RunEvent, RunSubscription, SubscriptionLost

KEEPALIVE_ENV = "RUNWARDEN_EVENTS_KEEPALIVE"
DEFAULT_KEEPALIVE = 15.0
"""Seconds of silence after which a stream sends a ``: keep-alive`` comment."""
MAX_STREAMS_ENV = "RUNWARDEN_EVENTS_MAX_STREAMS"
DEFAULT_MAX_STREAMS = 256
"""Open event streams allowed in total; beyond that 503 with Retry-After."""
RETRY_AFTER_SECONDS = 5

KEEPALIVE_COMMENT = b": keep-alive\n\n"
CONNECTED_COMMENT = b": connected\n\n"
"""First chunk of every stream: sent once subscribed, so events from then on will come."""

_encoder = msgspec.json.Encoder()


def keepalive_interval() -> float:
    """The keep-alive period: ``RUNWARDEN_EVENTS_KEEPALIVE`` seconds if set, else 15."""
    return positive_from_env(KEEPALIVE_ENV, DEFAULT_KEEPALIVE)


def max_streams() -> int:
    """The stream limit: ``RUNWARDEN_EVENTS_MAX_STREAMS`` if set (tests), else 256."""
    return positive_from_env(MAX_STREAMS_ENV, DEFAULT_MAX_STREAMS)


def encode_event(event: RunEvent, run_schema: str) -> bytes:
    """One SSE message: ``id``, ``event`` (the kind) and the run as one line of JSON."""
    data = _encoder.encode(run_body(event.run, run_schema))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.kind.value.encode(), data)


def _comment(text: str) -> bytes:
    return b": " + " ".join(text.splitlines()).encode() + b"\n\n"


async def sse_stream(
    subscription: RunSubscription, run_schema: str, keepalive: float
) -> AsyncIterator[bytes]:
    """The stream's chunks until the source drops the subscription or the client leaves."""
    try:
        yield CONNECTED_COMMENT
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    event = await subscription.next()
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            except SubscriptionLost as lost:
                yield _comment(f"disconnected: {lost}")
                return
            yield encode_event(event, run_schema)
    finally:
        subscription.close()
