"""The channel senders against local servers on 127.0.0.1: what each answer means."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.notify import Senders
from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message
from domain.notifications import Verdict
from tests.support.daemon import free_port
from tests.support.receiver import Answer, Receiver, receiver

MESSAGE = Message("d-1", "run.failed", datetime(2026, 1, 1, tzinfo=UTC), "job: failed", {})


class Refusing:
    """Refuses recipients with a scripted SMTP reply."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return self.reply


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def _webhook(url: str, timeout: float = 5.0) -> ChannelSpec:
    return ChannelSpec("h", ChannelType.WEBHOOK, url=url, timeout=timeout)


async def test_a_redirect_is_not_followed(hook: Receiver) -> None:
    target = hook.script("/elsewhere", Answer(200))
    url = hook.script("/moved", Answer(302, {"Location": target}))
    senders = Senders()
    try:
        result = await senders.send(_webhook(url), MESSAGE)
    finally:
        await senders.close()
    assert (result.verdict, result.status_code) == (Verdict.DEAD, 302)
    assert result.error is not None
    assert "redirects are not followed" in result.error
    assert hook.at("/elsewhere") == []


async def test_a_hang_past_the_timeout_is_a_retry(hook: Receiver) -> None:
    url = hook.script("/slow", Answer(200, hang=10))
    senders = Senders()
    try:
        result = await senders.send(_webhook(url, timeout=0.5), MESSAGE)
    finally:
        hook.release()
        await senders.close()
    assert result.verdict is Verdict.RETRY
    assert result.error == "no answer within 0.5s"


async def test_nobody_listening_is_a_retry() -> None:
    senders = Senders()
    try:
        result = await senders.send(_webhook(f"http://127.0.0.1:{free_port()}/x"), MESSAGE)
    finally:
        await senders.close()
    assert result.verdict is Verdict.RETRY
    assert result.error


@pytest.mark.parametrize(
    ("reply", "verdict"), [("550 no such user", Verdict.DEAD), ("451 later", Verdict.RETRY)]
)
async def test_smtp_refusals(reply: str, verdict: Verdict) -> None:
    port = free_port()
    controller = Controller(Refusing(reply), hostname="127.0.0.1", port=port)
    controller.start()
    channel = ChannelSpec(
        "m",
        ChannelType.SMTP,
        host="127.0.0.1",
        port=port,
        sender="rw@example.com",
        to=("ops@example.com",),
        timeout=5.0,
    )
    senders = Senders()
    try:
        result = await senders.send(channel, MESSAGE)
    finally:
        await senders.close()
        controller.stop()
    assert (result.verdict, result.status_code) == (verdict, int(reply[:3]))
