"""Channel senders: webhook, Slack and Discord (httpx), SMTP (smtplib), Apprise (extra)."""

from __future__ import annotations

import httpx

from adapters.notify.apprise import send_apprise
from adapters.notify.http import post
from adapters.notify.smtp import send_mail
from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message
from domain.outbox import SendResult
from domain.ports import ChannelSender


class Senders(ChannelSender):
    """Every channel type; one HTTP connection pool for the HTTP ones."""

    def __init__(self) -> None:
        # trust_env=False: no proxy or netrc from the environment reaches a receiver.
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    async def send(self, channel: ChannelSpec, message: Message) -> SendResult:
        match channel.type:
            case ChannelType.SMTP:
                return await send_mail(channel, message)
            case ChannelType.APPRISE:
                return await send_apprise(channel, message)
            case _:
                return await post(self._client, channel, message)

    async def close(self) -> None:
        await self._client.aclose()
