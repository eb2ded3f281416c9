"""Webhook, Slack and Discord channels: one JSON POST each try, with httpx.

Redirects are not followed (a 3xx is a refusal, as the Standard Webhooks advice says); the
channel's ``timeout`` bounds the whole try (connect, send, wait, read).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from adapters.notify.signing import sign
from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message
from domain.notifications import Verdict, verdict_for_status
from domain.outbox import SendResult

USER_AGENT = "runwarden-notify/1"


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def body_for(channel: ChannelSpec, message: Message) -> bytes:
    """The request body: Standard Webhooks JSON, or the chat services' formats."""
    match channel.type:
        case ChannelType.SLACK:
            payload: object = {"text": message.text()}
        case ChannelType.DISCORD:
            # Discord refuses content over 2000 characters.
            payload = {"content": message.text()[:2000]}
        case _:
            payload = message.body()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def headers_for(channel: ChannelSpec, message: Message, body: bytes) -> dict[str, str]:
    """The channel's headers, then the Standard Webhooks ones (which win)."""
    timestamp = int((message.sent_at or message.timestamp).timestamp())
    headers = {
        **channel.headers,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
    }
    if channel.secret:
        headers["webhook-signature"] = sign(channel.secret, message.id, timestamp, body)
    return headers


async def post(client: httpx.AsyncClient, channel: ChannelSpec, message: Message) -> SendResult:
    """One try on a webhook, Slack or Discord channel."""
    assert channel.url is not None  # the config requires it
    body = body_for(channel, message)
    try:
        async with asyncio.timeout(channel.timeout):
            response = await client.post(
                channel.url,
                content=body,
                headers=headers_for(channel, message, body),
                timeout=channel.timeout,
                follow_redirects=False,
            )
    except TimeoutError:
        return SendResult(Verdict.RETRY, error=f"no answer within {channel.timeout:g}s")
    except httpx.TimeoutException:
        return SendResult(Verdict.RETRY, error=f"no answer within {channel.timeout:g}s")
    except httpx.HTTPError as error:
        text = channel.redact(f"{type(error).__name__}: {error}")
        return SendResult(Verdict.RETRY, error=text)
    verdict = verdict_for_status(response.status_code)
    if verdict is Verdict.DELIVERED:
        return SendResult(verdict, response.status_code)
    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    if 300 <= response.status_code < 400:
        reason += " (redirects are not followed)"
    return SendResult(
        verdict,
        response.status_code,
        channel.redact(reason),
        retry_after(response.headers.get("retry-after")),
    )
