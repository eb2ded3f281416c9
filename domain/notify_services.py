"""Notification use cases the API and the CLI share: look, test, retry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from domain.channels import ChannelSpec
from domain.errors import NotificationNotDead, NotificationNotFound, NotifierNotFound
from domain.messages import iso
from domain.notifications import TEST_EVENT, DeliveryStatus
from domain.outbox import Attempt, Delivery, DeliveryPage, DeliveryQuery
from domain.ports import NotificationOutbox

FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD)
"""States a delivery does not leave by itself."""


def find_channel(channels: Mapping[str, ChannelSpec], name: str) -> ChannelSpec:
    """The channel ``name``; :class:`NotifierNotFound` if none is configured."""
    channel = channels.get(name)
    if channel is None:
        raise NotifierNotFound(name)
    return channel


async def send_test(
    outbox: NotificationOutbox, channels: Mapping[str, ChannelSpec], name: str, now: datetime
) -> Delivery:
    """Put a ``notify.test`` for channel ``name`` in the outbox (the same path as every
    event); returns its delivery, pending."""
    find_channel(channels, name)
    ids = await outbox.emit(
        TEST_EVENT,
        None,
        None,
        {"message": "a test from runwarden", "sent_at": iso(now)},
        only_channel=name,
    )
    delivery = await outbox.get(ids[0]) if ids else None
    if delivery is None:  # cannot happen: a test has no dedupe key
        raise NotificationNotFound("")
    return delivery


async def get_delivery(outbox: NotificationOutbox, delivery_id: str) -> Delivery:
    """One delivery; :class:`NotificationNotFound` if absent."""
    delivery = await outbox.get(delivery_id)
    if delivery is None:
        raise NotificationNotFound(delivery_id)
    return delivery


async def delivery_with_attempts(
    outbox: NotificationOutbox, delivery_id: str
) -> tuple[Delivery, Sequence[Attempt]]:
    """One delivery and its tries, oldest first."""
    delivery = await get_delivery(outbox, delivery_id)
    return delivery, await outbox.attempts(delivery_id)


async def retry_delivery(outbox: NotificationOutbox, delivery_id: str) -> Delivery:
    """Make a dead delivery pending again (a fresh budget); 409 if it is not dead."""
    delivery = await get_delivery(outbox, delivery_id)
    if not await outbox.retry(delivery_id):
        current = await get_delivery(outbox, delivery_id)
        raise NotificationNotDead(delivery_id, current.status.value)
    return await get_delivery(outbox, delivery.id)


async def list_deliveries(outbox: NotificationOutbox, query: DeliveryQuery) -> DeliveryPage:
    """A page of deliveries, newest first."""
    return await outbox.list(query)
