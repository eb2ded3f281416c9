"""The relay of one node over the in-memory outbox: what each try's answer does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.memory import FakeClock, InMemoryLogStore, InMemoryRunRepository
from adapters.memory_notify import InMemoryOutbox
from app.config_notify import NotifySettings
from app.runtime.notifier import NotificationRelay, routing_of
from domain.channels import ChannelSpec, ChannelType
from domain.messages import Message
from domain.notifications import DeliveryStatus, Verdict
from domain.outbox import DeliveryQuery, SendResult
from domain.ports import ChannelSender
from domain.tasks import TaskSpec

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
NODE = "00000000-0000-0000-0000-00000000000a"
HOOK = ChannelSpec(
    "hook", ChannelType.WEBHOOK, url="https://h.example/p/SECRETPATH", secret="s3cr3t-value"
)


class ScriptedSender(ChannelSender):
    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.sent: list[Message] = []

    async def send(self, channel: ChannelSpec, message: Message) -> SendResult:
        self.sent.append(message)
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]

    async def close(self) -> None:
        pass


def _relay(sender: ScriptedSender, **settings: float) -> tuple[NotificationRelay, FakeClock]:
    clock = FakeClock(T0)
    outbox = InMemoryOutbox(InMemoryRunRepository(), clock)
    relay = NotificationRelay(
        outbox,
        sender,
        InMemoryLogStore(),
        clock,
        NotifySettings(notifiers={"hook": HOOK}, **settings),  # type: ignore[arg-type]
        {"job": TaskSpec(name="job", run="true")},
        node=lambda: NODE,
        base_url="http://127.0.0.1:9477",
    )
    return relay, clock


async def _one(relay: NotificationRelay) -> str:
    await relay.outbox.configure(routing_of(relay.settings, {}))
    delivery = await relay.test("hook", wait=None)
    await relay.look()
    await relay.drain()
    return delivery.id


async def test_a_retry_waits_and_the_same_id_goes_again() -> None:
    sender = ScriptedSender(
        SendResult(Verdict.RETRY, 500, "HTTP 500 at https://h.example/p/SECRETPATH"),
        SendResult(Verdict.DELIVERED, 200),
    )
    relay, clock = _relay(sender)
    delivery_id = await _one(relay)
    found = await relay.outbox.get(delivery_id)
    assert found is not None
    assert found.status is DeliveryStatus.RETRYING
    assert found.last_error is not None
    assert "SECRETPATH" not in found.last_error
    assert found.next_attempt_at is not None
    assert timedelta(seconds=0.8) <= found.next_attempt_at - T0 <= timedelta(seconds=1.2)
    await relay.look()
    await relay.drain()
    assert len(sender.sent) == 1  # not due yet
    clock.advance(1.5)
    await relay.look()
    await relay.drain()
    assert [m.id for m in sender.sent] == [delivery_id, delivery_id]
    done = await relay.outbox.get(delivery_id)
    assert done is not None
    assert done.status is DeliveryStatus.DELIVERED


async def test_retry_after_and_the_budget() -> None:
    sender = ScriptedSender(SendResult(Verdict.RETRY, 429, "busy", retry_after=120.0))
    relay, _ = _relay(sender, retry_budget=60.0)
    delivery_id = await _one(relay)
    found = await relay.outbox.get(delivery_id)
    assert found is not None
    assert found.status is DeliveryStatus.DEAD  # 120 s would pass the 60 s budget


async def test_a_refusal_is_dead_at_once() -> None:
    relay, _ = _relay(ScriptedSender(SendResult(Verdict.DEAD, 404, "HTTP 404")))
    delivery_id = await _one(relay)
    (attempt,) = await relay.outbox.attempts(delivery_id)
    assert (attempt.n, attempt.verdict, attempt.status_code) == (1, Verdict.DEAD, 404)


async def test_missed_ticks_make_one_event_per_gap() -> None:
    relay, _ = _relay(ScriptedSender(SendResult(Verdict.DELIVERED, 200)))
    hook = ChannelSpec("hook", ChannelType.WEBHOOK, url="https://h", on=frozenset({"missed"}))
    relay.settings = NotifySettings(notifiers={"hook": hook})
    await relay.outbox.configure(routing_of(relay.settings, {}))
    task = TaskSpec(name="job", run="true", cron="* * * * *")
    due = [T0 + timedelta(minutes=i) for i in range(5)]
    await relay.missed(task, due, due[-1:])
    await relay.missed(task, due, due[-1:])  # another node, the same gap
    page = await relay.outbox.list(DeliveryQuery())
    (found,) = page.deliveries
    assert (found.type, found.count, found.task_name) == ("run.missed", 4, "job")
    assert found.data["first_missed_at"] == "2026-12-06T03:00:00.000Z"
