"""Notification channels as configured: plain, validated values (``app/config_notify.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from domain.notifications import DEFAULT_ON, ChannelRoute

DEFAULT_TIMEOUT = 10.0
REDACTED = "[redacted]"


class ChannelType(StrEnum):
    """How a channel delivers."""

    WEBHOOK = "webhook"
    """A JSON POST in the Standard Webhooks shape, signed with ``secret``."""
    SLACK = "slack"
    """A Slack incoming webhook (``{"text"}``)."""
    DISCORD = "discord"
    """A Discord webhook (``{"content"}``)."""
    SMTP = "smtp"
    """An e-mail through an SMTP server."""
    APPRISE = "apprise"
    """Any Apprise URL (the optional extra ``runwarden[apprise]``)."""


class SmtpTls(StrEnum):
    """How an SMTP connection is secured."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One ``[notifiers.NAME]`` table, defaults applied and ``${...}`` resolved."""

    name: str
    type: ChannelType
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    on: frozenset[str] = frozenset(DEFAULT_ON)
    tasks: tuple[str, ...] = ("*",)
    secret: str | None = None
    host: str | None = None
    port: int | None = None
    tls: SmtpTls = SmtpTls.NONE
    username: str | None = None
    password: str | None = None
    sender: str | None = None
    """The ``from`` key."""
    to: tuple[str, ...] = ()

    @property
    def route(self) -> ChannelRoute:
        """What the outbox needs to route events to this channel."""
        return ChannelRoute(self.name, self.on, self.tasks)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values never shown in answers, logs or stored errors: the URL (chat webhook
        URLs are credentials), its path and query, the secret, the password, header
        values."""
        values = [self.secret, self.password, *self.headers.values()]
        if self.url:
            parts = urlsplit(self.url)
            values += [self.url, parts.path, parts.query, parts.password]
        return tuple(sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``[redacted]``."""
        for value in self.secrets:
            text = text.replace(value, REDACTED)
        return text

    @property
    def public_url(self) -> str | None:
        """The URL as shown: scheme and host only (``https://hooks.slack.com/…``)."""
        if not self.url:
            return None
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/…" if parts.scheme else REDACTED
