"""Channel senders: webhook, Slack and Discord (httpx), SMTP (smtplib), Apprise (extra).

httpx and the senders are imported on the first notification sent, not with the daemon:
a daemon with no channel (or an idle one) does not load an HTTP client it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message
from domain.outbox import SendResult
from domain.ports import ChannelSender

if TYPE_CHECKING:
    import httpx


class Senders(ChannelSender):
    """Every channel type; one HTTP connection pool for the HTTP ones."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            # trust_env=False: no proxy or netrc from the environment reaches a receiver.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def send(self, channel: ChannelSpec, message: Message) -> SendResult:
        match channel.type:
            case ChannelType.SMTP:
                from adapters.notify.smtp import send_mail

                return await send_mail(channel, message)
            case ChannelType.APPRISE:
                from adapters.notify.apprise import send_apprise

                return await send_apprise(channel, message)
            case _:
                from adapters.notify.http import post

                return await post(self._http(), channel, message)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
