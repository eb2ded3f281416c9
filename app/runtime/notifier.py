"""The notification relay of one node: claims due deliveries and sends them.

Every node runs one. Each look (every ``poll`` seconds, or when woken) it summarises
closed coalescing windows, records ``run.long_running`` events, and claims due deliveries
with a lease; each claimed delivery is sent in a task of its own, so a slow or dead
receiver holds up only itself, never a run, never another delivery. A node that dies
after claiming leaves its deliveries to whoever claims them when the lease runs out, with
the same id (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from urllib.parse import quote

from app.config import positive_from_env
from app.config_notify import NotifySettings
from app.runtime.resilience import durably
from domain import notify_services
from domain.channels import ChannelSpec
from domain.errors import StoreUnavailable
from domain.messages import Message, iso, message_for
from domain.notifications import (
    TAIL_EVENTS,
    ChannelRoute,
    Routing,
    Verdict,
    after_failure,
    missed_ticks,
)
from domain.outbox import Claimed, Delivery, Outcome, SendResult
from domain.ports import ChannelSender, Clock, LogStore, NotificationOutbox
from domain.tasks import TaskSpec

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
"""Deliveries one node sends at once."""
LEASE_MARGIN = 30.0
"""Seconds a claim outlives the slowest channel's timeout: a node that dies holding one
leaves it to the others after this (plus the timeout)."""
WAIT_POLL = 0.2
PRUNE_INTERVAL = 600.0
"""Seconds between a node's deletions of settled notifications older than ``keep_for``
(a batch of at most ``PRUNE_BATCH`` events each)."""
PRUNE_BATCH = 500


def routing_of(settings: NotifySettings, tasks: Mapping[str, TaskSpec]) -> Routing:
    """What the outbox needs of the config."""
    return Routing(
        channels=tuple(ChannelRoute(c.name, c.on, c.tasks) for c in settings.notifiers.values()),
        task_channels={n: t.notify for n, t in tasks.items() if t.notify is not None},
        warn_after={n: t.warn_after for n, t in tasks.items() if t.warn_after is not None},
        coalesce_window=settings.coalesce_window,
    )


class NotificationRelay:
    """Sends this node's share of the outbox."""

    def __init__(
        self,
        outbox: NotificationOutbox,
        sender: ChannelSender,
        logs: LogStore,
        clock: Clock,
        settings: NotifySettings,
        tasks: Mapping[str, TaskSpec],
        node: Callable[[], str],
        base_url: str,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self._sender = sender
        self._logs = logs
        self._clock = clock
        self.settings = settings
        self._tasks = tasks
        self._node = node
        self._base_url = (settings.base_url or base_url).rstrip("/")
        self._on_outcome = on_outcome or (lambda _channel, _outcome: None)
        self.poll = positive_from_env("RUNWARDEN_NOTIFY_POLL", 1.0)
        slowest = max((c.timeout for c in self.channels.values()), default=10.0)
        self.lease = positive_from_env("RUNWARDEN_NOTIFY_LEASE", slowest + LEASE_MARGIN)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_prune = 0.0

    @property
    def channels(self) -> Mapping[str, ChannelSpec]:
        return self.settings.notifiers

    async def start(self) -> None:
        """Write this config's routing to the store, then start looking."""
        routing = routing_of(self.settings, self._tasks)
        await durably(lambda: self.outbox.configure(routing), what="writing notification routes")
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def reconfigure(
        self, settings: NotifySettings, tasks: Mapping[str, TaskSpec], base_url: str
    ) -> None:
        """Take a reloaded config: new channels, routes and tasks' ``notify`` lists, written
        to the store (the outbox trigger routes with them) before this node uses them."""
        routing = routing_of(settings, tasks)
        await durably(lambda: self.outbox.configure(routing), what="writing notification routes")
        self.settings = settings
        self._tasks = tasks
        self._base_url = (settings.base_url or base_url).rstrip("/")

    async def stop(self) -> None:
        """Stop looking, cut off the tries in flight and give their deliveries back (due
        at once for the other nodes, or this one's next start)."""
        tasks = [t for t in (self._loop, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._sender.close()
        try:
            released = await self.outbox.release(self._node())
        except StoreUnavailable:
            return  # their leases run out instead
        if released:
            log.info("gave back %d notifications being sent", released)

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> None:
        """Wait for the tries in flight to be recorded (tests, a look by hand)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.look()
            except StoreUnavailable:
                pass  # the heartbeat loop reports the outage
            except Exception:
                log.exception("notification relay failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()

    async def look(self) -> None:
        """Summaries, long-running events, then claim and start sending."""
        if not self.channels:
            return
        await self.outbox.flush()
        await self.outbox.emit_long_running()
        if self._clock.monotonic() >= self._next_prune:
            self._next_prune = self._clock.monotonic() + PRUNE_INTERVAL
            before = self._clock.now() - timedelta(seconds=self.settings.keep_for)
            # Batches, so no transaction holds many rows; the next look goes on.
            await self.outbox.prune(before, PRUNE_BATCH)
        free = MAX_IN_FLIGHT - len(self._in_flight)
        if free <= 0:
            return
        for claimed in await self.outbox.claim(self._node(), free, self.lease):
            task = asyncio.get_running_loop().create_task(self._deliver(claimed))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def message(self, delivery: Delivery, tail: list[str] | None) -> Message:
        url = None
        if delivery.run_id and delivery.task_name:
            url = (
                f"{self._base_url}/api/tasks/{quote(delivery.task_name, safe='')}"
                f"/runs/{quote(delivery.run_id, safe='')}"
            )
        return message_for(delivery, url, tail, self._clock.now())

    async def _tail(self, delivery: Delivery) -> list[str] | None:
        if delivery.run_id is None or delivery.type not in TAIL_EVENTS:
            return None
        try:
            first, total = await self._logs.stats(delivery.run_id)
            batch = await self._logs.read_batch(delivery.run_id, max(first, total - 20), 20)
        except StoreUnavailable:
            return None
        return [line.text for line in batch.lines()]

    async def _deliver(self, claimed: Claimed) -> None:
        delivery, node = claimed.delivery, self._node()
        channel = self.channels.get(delivery.channel)
        started = time.monotonic()
        if channel is None:
            # Config drift: another node may know the channel; the budget ends it.
            verdict, delay = after_failure(
                Verdict.RETRY, claimed.attempt, claimed.age, self.settings.retry_budget, 60.0
            )
            error = f"no notifier {delivery.channel!r} in the config of node {node}"
            outcome = Outcome(verdict, delay, error=error)
        else:
            message = self.message(delivery, await self._tail(delivery))
            try:
                result = await self._sender.send(channel, message)
            except Exception as exc:  # a sender's bug must not leave the claim to the lease
                log.exception("sending notification %s failed", delivery.id)
                result = SendResult(Verdict.RETRY, error=f"internal error: {type(exc).__name__}")
            verdict, delay = Verdict.DELIVERED, 0.0
            if result.verdict is not Verdict.DELIVERED:
                verdict, delay = after_failure(
                    result.verdict,
                    claimed.attempt,
                    claimed.age,
                    self.settings.retry_budget,
                    result.retry_after,
                )
            outcome = Outcome(
                verdict,
                delay,
                result.status_code,
                channel.redact(result.error) if result.error else None,
                int((time.monotonic() - started) * 1000),
            )
        self._on_outcome(delivery.channel, verdict.value)
        if verdict is not Verdict.DELIVERED:
            log.warning(
                "notification %s to %s, try %d: %s (%s)",
                delivery.id,
                delivery.channel,
                claimed.attempt,
                outcome.error or outcome.status_code,
                "given up" if verdict is Verdict.DEAD else f"retrying in {delay:.1f}s",
            )
        await durably(
            lambda: self.outbox.finish(delivery.id, node, claimed.attempt, outcome),
            what="recording a notification's outcome",
        )

    async def missed(self, task: TaskSpec, due: list[datetime], chosen: list[datetime]) -> None:
        """Record ``run.missed`` for the ticks ``catch_up`` dropped (once per gap)."""
        dropped = missed_ticks(due, chosen)
        if not dropped or not self.channels:
            return
        data = {
            "task": task.name,
            "count": len(dropped),
            "first_missed_at": iso(dropped[0]),
            "last_missed_at": iso(dropped[-1]),
            "catch_up": task.catch_up.value,
        }
        key = f"missed:{task.name}:{iso(dropped[-1])}"
        await self.outbox.emit(
            "run.missed", task.name, None, data, dedupe_key=key, count=len(dropped)
        )
        self.wake()

    async def test(self, name: str, wait: float | None) -> Delivery:
        """A ``notify.test`` through the outbox; with ``wait``, answers once it was
        delivered or given up, or after ``wait`` seconds, with the delivery as it is then."""
        delivery = await notify_services.send_test(
            self.outbox, self.channels, name, self._clock.now()
        )
        self.wake()
        if wait is None:
            return delivery
        deadline = self._clock.monotonic() + wait
        while delivery.status not in notify_services.FINAL:
            if self._clock.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL)
            delivery = await notify_services.get_delivery(self.outbox, delivery.id)
        return delivery
