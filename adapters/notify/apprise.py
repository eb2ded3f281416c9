"""The Apprise channel (the optional extra ``runwarden[apprise]``).

Apprise reports only success or failure (no status, no ``Retry-After``): a failure is
retried until the budget runs out.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from domain.channels import ChannelSpec
from domain.messages import Message
from domain.notifications import Verdict
from domain.outbox import SendResult

MISSING = 'notifier type "apprise" needs the Apprise package: pip install "runwarden[apprise]"'


def load_apprise() -> Any:
    """The ``apprise`` module; raises ImportError with :data:`MISSING` when absent."""
    try:
        return importlib.import_module("apprise")
    except ImportError:
        raise ImportError(MISSING) from None


def _notify(channel: ChannelSpec, message: Message) -> bool:
    apprise = load_apprise()
    app = apprise.Apprise()
    app.add(channel.url)
    return bool(app.notify(title=message.title, body=message.text()))


async def send_apprise(channel: ChannelSpec, message: Message) -> SendResult:
    """One try on an Apprise channel."""
    try:
        async with asyncio.timeout(channel.timeout + 1):
            ok = await asyncio.to_thread(_notify, channel, message)
    except ImportError as error:
        return SendResult(Verdict.DEAD, error=str(error))
    except TimeoutError:
        return SendResult(Verdict.RETRY, error=f"no answer within {channel.timeout:g}s")
    except Exception as error:  # a plugin's own failure: Apprise's plugins raise anything
        return SendResult(Verdict.RETRY, error=channel.redact(f"{type(error).__name__}: {error}"))
    if not ok:
        return SendResult(Verdict.RETRY, error="apprise: not sent")
    return SendResult(Verdict.DELIVERED)
