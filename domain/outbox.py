"""The notification outbox's records: events, deliveries, attempts, and how to query them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.notifications import DeliveryStatus, Verdict


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one channel, as stored in the outbox.

    ``id`` is also the ``webhook-id`` sent on every try. ``data`` holds the event's facts
    (timestamps as integer microseconds since the epoch, as the run events' payloads do);
    ``count`` is how many occurrences the message stands for (a coalescing summary: more
    than one).
    """

    id: str
    event_id: str
    type: str
    channel: str
    status: DeliveryStatus
    created_at: datetime
    task_name: str | None = None
    run_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    count: int = 1
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a delivery: its number (from 1), when, the answer or the error."""

    n: int
    at: datetime
    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a node has claimed (``attempt`` is this try's number) and its age in
    seconds since it was created or last retried by hand, on the store's clock."""

    delivery: Delivery
    attempt: int
    age: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one try, to record: the verdict, and for a retry the delay."""

    verdict: Verdict
    delay: float = 0.0
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """A page of deliveries, newest first, filtered by what is set."""

    status: Sequence[DeliveryStatus] = ()
    channel: str | None = None
    task_name: str | None = None
    run_id: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """One page and the number of every match."""

    deliveries: Sequence[Delivery]
    total: int


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """A channel's last success and failure, and how many deliveries wait or are dead."""

    channel: str
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    pending: int = 0
    dead: int = 0


def matches(delivery: Delivery, query: DeliveryQuery) -> bool:
    """Whether ``delivery`` passes the query's filters."""
    return (
        (not query.status or delivery.status in query.status)
        and (query.channel is None or delivery.channel == query.channel)
        and (query.task_name is None or delivery.task_name == query.task_name)
        and (query.run_id is None or delivery.run_id == query.run_id)
    )


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one try went, as the channel saw it."""

    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked to wait (``Retry-After``)."""
