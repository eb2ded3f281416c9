"""Notification values to wire types (secrets never leave: see ``ChannelSpec``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from msgspec import UNSET

from app import schemas
from app.presenters import timestamp
from app.urls import schema_url
from domain.channels import ChannelSpec, ChannelType
from domain.messages import message_for
from domain.outbox import Attempt, ChannelStats, Delivery

Connection = ASGIConnection[Any, Any, Any, Any]


def notifier(
    connection: Connection, channel: ChannelSpec, stats: ChannelStats | None
) -> schemas.Notifier:
    smtp = channel.type is ChannelType.SMTP
    stats = stats or ChannelStats(channel.name)
    return schemas.Notifier(
        schema=schema_url(connection, "Notifier"),
        name=channel.name,
        type=channel.type.value,
        on=sorted(channel.on),
        tasks=list(channel.tasks),
        timeout_seconds=channel.timeout,
        url=channel.public_url or UNSET,
        header_names=sorted(channel.headers),
        signed=channel.secret is not None,
        host=channel.host if smtp and channel.host else UNSET,
        port=channel.port if smtp and channel.port else UNSET,
        tls=channel.tls.value if smtp else UNSET,
        sender=channel.sender if smtp and channel.sender else UNSET,
        to=list(channel.to) if smtp else UNSET,
        last_success_at=timestamp(stats.last_success_at) if stats.last_success_at else UNSET,
        last_failure_at=timestamp(stats.last_failure_at) if stats.last_failure_at else UNSET,
        last_error=channel.redact(stats.last_error) if stats.last_error else UNSET,
        pending=stats.pending,
        dead=stats.dead,
    )


def notifiers(
    connection: Connection, channels: Sequence[ChannelSpec], stats: Sequence[ChannelStats]
) -> schemas.NotifiersBody:
    by_name = {s.channel: s for s in stats}
    return schemas.NotifiersBody(
        schema=schema_url(connection, "NotifiersBody"),
        notifiers=[notifier(connection, c, by_name.get(c.name)) for c in channels],
    )


def attempt(connection: Connection, tried: Attempt) -> schemas.NotificationAttempt:
    return schemas.NotificationAttempt(
        schema=schema_url(connection, "NotificationAttempt"),
        n=tried.n,
        at=timestamp(tried.at),
        outcome=tried.verdict.value,
        status_code=tried.status_code if tried.status_code is not None else UNSET,
        error=tried.error or UNSET,
        duration_ms=tried.duration_ms,
    )


def notification(
    connection: Connection, d: Delivery, attempts: Sequence[Attempt] | None = None
) -> schemas.Notification:
    return schemas.Notification(
        schema=schema_url(connection, "Notification"),
        id=d.id,
        type=d.type,
        channel=d.channel,
        status=d.status.value,
        created_at=timestamp(d.created_at),
        task_name=d.task_name or UNSET,
        run_id=d.run_id or UNSET,
        count=d.count,
        attempt_count=d.attempts,
        next_attempt_at=timestamp(d.next_attempt_at) if d.next_attempt_at else UNSET,
        delivered_at=timestamp(d.delivered_at) if d.delivered_at else UNSET,
        last_attempt_at=timestamp(d.last_attempt_at) if d.last_attempt_at else UNSET,
        last_status_code=d.last_status_code if d.last_status_code is not None else UNSET,
        last_error=d.last_error or UNSET,
        data=dict(message_for(d, None).data),
        attempts=[attempt(connection, a) for a in attempts] if attempts is not None else UNSET,
    )


def notification_page(
    connection: Connection, deliveries: Sequence[Delivery], total: int
) -> schemas.NotificationsBody:
    return schemas.NotificationsBody(
        schema=schema_url(connection, "NotificationsBody"),
        notifications=[notification(connection, d) for d in deliveries],
        total=total,
    )
