"""The SMTP channel: the stdlib's ``smtplib`` in a worker thread (no dependency)."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from email.message import EmailMessage

from domain.channels import ChannelSpec, SmtpTls
from domain.messages import Message
from domain.notifications import Verdict
from domain.outbox import SendResult


def email_for(channel: ChannelSpec, message: Message) -> EmailMessage:
    """The e-mail: the title as subject, the facts as the text."""
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = channel.sender or ""
    mail["To"] = ", ".join(channel.to)
    mail["Message-ID"] = f"<{message.id}@runwarden>"
    mail.set_content(message.text())
    return mail


def _send(channel: ChannelSpec, mail: EmailMessage) -> None:
    host, port, timeout = channel.host or "", channel.port or 25, channel.timeout
    context = ssl.create_default_context()
    # The host name as is: smtplib's default (getfqdn) may ask DNS on every message.
    local = socket.gethostname()
    client: smtplib.SMTP
    if channel.tls is SmtpTls.TLS:
        client = smtplib.SMTP_SSL(
            host, port, local_hostname=local, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(host, port, local_hostname=local, timeout=timeout)
    with client:
        if channel.tls is SmtpTls.STARTTLS:
            client.starttls(context=context)
        if channel.username and channel.password:
            client.login(channel.username, channel.password)
        client.send_message(mail)


def verdict_for_smtp(code: int) -> Verdict:
    """4xx replies are temporary (retry), 5xx permanent (dead)."""
    return Verdict.RETRY if 400 <= code < 500 else Verdict.DEAD


async def send_mail(channel: ChannelSpec, message: Message) -> SendResult:
    """One try on an SMTP channel."""
    mail = email_for(channel, message)
    try:
        # The thread cannot be cancelled; its socket timeout bounds it.
        await asyncio.to_thread(_send, channel, mail)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        code = max(codes) if codes else 550
        text = channel.redact(f"recipients refused: {error}")
        return SendResult(verdict_for_smtp(code), code, text)
    except smtplib.SMTPResponseException as error:
        text = channel.redact(f"SMTP {error.smtp_code}: {error.smtp_error!r}")
        return SendResult(verdict_for_smtp(error.smtp_code), error.smtp_code, text)
    except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as error:
        return SendResult(Verdict.RETRY, error=channel.redact(f"{type(error).__name__}: {error}"))
    return SendResult(Verdict.DELIVERED)
