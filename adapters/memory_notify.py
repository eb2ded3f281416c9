"""The notification outbox in memory: the same contract as Postgres' (migration 0009).

It is told of every run end by ``InMemoryRunRepository.on_end`` as the end is stored, and
applies ``domain.notifications`` on its clock. Not thread-safe; no method awaits midway.
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from adapters.memory import InMemoryRunRepository
from domain import notifications as rules
from domain.notifications import DeliveryStatus, Routing, Send, Stream, Verdict
from domain.outbox import (
    Attempt,
    ChannelStats,
    Claimed,
    Delivery,
    DeliveryPage,
    DeliveryQuery,
    Outcome,
    matches,
)
from domain.ports import Clock, NotificationOutbox
from domain.run import Run, RunStatus

_DUE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING, DeliveryStatus.SENDING)
_FAILURE_EVENTS = {f"run.{reason.value}" for reason in rules.FAILURES}


def run_data(run: Run) -> dict[str, Any]:
    """A run's facts as the outbox stores them (timestamps: integer microseconds)."""

    def micros(at: datetime | None) -> int | None:
        return round(at.timestamp() * 1_000_000) if at is not None else None

    data = {
        "task": run.task_name,
        "run_id": run.id,
        "end_reason": run.end_reason.value if run.end_reason else None,
        "exit_code": run.exit_code,
        "attempt": run.retry_attempt,
        "triggered_by": run.triggered_by.value,
        "started_at": micros(run.start_at),
        "ended_at": micros(run.end_at),
    }
    return {key: value for key, value in data.items() if value is not None}


class InMemoryOutbox(NotificationOutbox):
    """Deliveries in a dict, written as ``repo`` stores run ends."""

    def __init__(self, repo: InMemoryRunRepository, clock: Clock) -> None:
        self._repo = repo
        self._clock = clock
        self.routing = Routing()
        self.deliveries: dict[str, Delivery] = {}
        self._budget_from: dict[str, datetime] = {}
        self._holder: dict[str, str] = {}
        self._attempts: dict[str, list[Attempt]] = {}
        self._dedupe: set[str] = set()
        self._streams: dict[tuple[str, str], Stream] = {}
        self._notified: set[str] = set()
        repo.on_end = self._run_ended

    async def configure(self, routing: Routing) -> None:
        self.routing = routing

    def _record(
        self,
        type: str,
        task: str | None,
        run_id: str | None,
        data: Mapping[str, Any],
        channels: Sequence[str],
        status: DeliveryStatus,
        count: int = 1,
    ) -> list[str]:
        now = self._clock.now()
        event_id = str(uuid.uuid4())
        ids = []
        for channel in channels:
            delivery = Delivery(
                id=str(uuid.uuid4()),
                event_id=event_id,
                type=type,
                channel=channel,
                status=status,
                created_at=now,
                task_name=task,
                run_id=run_id,
                data=dict(data),
                count=count,
                next_attempt_at=now if status is DeliveryStatus.PENDING else None,
            )
            self.deliveries[delivery.id] = delivery
            self._budget_from[delivery.id] = now
            ids.append(delivery.id)
        return ids

    def _summary(self, task: str, event: str, stream: Stream) -> None:
        run = self._repo.runs.get(stream.last_run_id or "")
        data = run_data(run) if run is not None else {"task": task, "run_id": stream.last_run_id}
        channels = rules.channels_for(self.routing, task, event)
        self._record(
            event,
            task,
            stream.last_run_id,
            {**data, "summary": True},
            channels,
            DeliveryStatus.PENDING,
            stream.held,
        )

    def _run_ended(self, run: Run) -> None:
        if not self.routing.channels or run.end_reason is None:
            return
        now, task = self._clock.now(), run.task_name
        event = f"run.{run.end_reason.value}"
        channels = rules.channels_for(self.routing, task, event)
        send: Send | None = None
        if channels:
            closed, self._streams[(task, event)], send = rules.coalesce(
                self._streams.get((task, event)), now, self.routing.coalesce_window, run.id
            )
            if closed is not None:
                self._summary(task, event, closed)
            status = DeliveryStatus.PENDING if send is Send.NOW else DeliveryStatus.SUPPRESSED
            self._record(event, task, run.id, run_data(run), channels, status)
        effects = rules.end_effects(run.end_reason, task in self._notified, bool(channels), send)
        if effects.flush_task:
            for key in sorted(k for k in self._streams if k[0] == task):
                if key[1] in _FAILURE_EVENTS:
                    stream = self._streams.pop(key)
                    if stream.held:
                        self._summary(task, key[1], stream)
        if effects.recovered:
            recovered = rules.channels_for(self.routing, task, "run.recovered")
            self._record(
                "run.recovered", task, run.id, run_data(run), recovered, DeliveryStatus.PENDING
            )
        if effects.failure_notified:
            self._notified.add(task)
        else:
            self._notified.discard(task)

    async def emit(
        self,
        type: str,
        task_name: str | None,
        run_id: str | None,
        data: Mapping[str, Any],
        *,
        only_channel: str | None = None,
        dedupe_key: str | None = None,
        count: int = 1,
    ) -> Sequence[str] | None:
        if dedupe_key is not None:
            if dedupe_key in self._dedupe:
                return None
            self._dedupe.add(dedupe_key)
        channels = (
            [only_channel]
            if only_channel is not None
            else rules.channels_for(self.routing, task_name or "", type)
        )
        return self._record(type, task_name, run_id, data, channels, DeliveryStatus.PENDING, count)

    async def emit_long_running(self) -> int:
        now, n = self._clock.now(), 0
        for run in list(self._repo.runs.values()):
            warn = self.routing.warn_after.get(run.task_name)
            if run.status is not RunStatus.RUNNING or run.start_at is None:
                continue
            if not rules.long_running_due(run.start_at, now, warn):
                continue
            data = {**run_data(run), "warn_after_seconds": warn}
            if (
                await self.emit(
                    "run.long_running",
                    run.task_name,
                    run.id,
                    data,
                    dedupe_key=f"long_running:{run.id}",
                )
                is not None
            ):
                n += 1
        return n

    async def flush(self) -> int:
        now, n = self._clock.now(), 0
        for key, stream in sorted(self._streams.items()):
            if rules.window_closed(stream, now, self.routing.coalesce_window):
                self._summary(key[0], key[1], stream)
                self._streams[key] = dataclasses.replace(stream, held=0, last_run_id=None)
                n += 1
        return n

    async def claim(self, node: str, limit: int, lease: float) -> Sequence[Claimed]:
        now = self._clock.now()
        due = sorted(
            (
                d
                for d in self.deliveries.values()
                if d.status in _DUE and d.next_attempt_at is not None and d.next_attempt_at <= now
            ),
            key=lambda d: (d.next_attempt_at or now, d.id),
        )[:limit]
        claimed = []
        for d in due:
            taken = dataclasses.replace(
                d,
                status=DeliveryStatus.SENDING,
                attempts=d.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease),
            )
            self.deliveries[d.id] = taken
            self._holder[d.id] = node
            age = (now - self._budget_from[d.id]).total_seconds()
            claimed.append(Claimed(taken, taken.attempts, age))
        return claimed

    async def finish(self, delivery_id: str, node: str, attempt: int, outcome: Outcome) -> bool:
        now = self._clock.now()
        tries = self._attempts.setdefault(delivery_id, [])
        if all(a.n != attempt for a in tries):
            tries.append(
                Attempt(
                    attempt,
                    now,
                    outcome.verdict,
                    outcome.status_code,
                    outcome.error,
                    outcome.duration_ms,
                )
            )
            tries.sort(key=lambda a: a.n)
        d = self.deliveries.get(delivery_id)
        if (
            d is None
            or d.status is not DeliveryStatus.SENDING
            or self._holder.get(delivery_id) != node
            or d.attempts != attempt
        ):
            return False
        status = {
            Verdict.DELIVERED: DeliveryStatus.DELIVERED,
            Verdict.RETRY: DeliveryStatus.RETRYING,
            Verdict.DEAD: DeliveryStatus.DEAD,
        }[outcome.verdict]
        self._holder.pop(delivery_id, None)
        self.deliveries[delivery_id] = dataclasses.replace(
            d,
            status=status,
            last_attempt_at=now,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
            delivered_at=now if status is DeliveryStatus.DELIVERED else None,
            next_attempt_at=now + timedelta(seconds=outcome.delay)
            if status is DeliveryStatus.RETRYING
            else None,
        )
        return True

    async def retry(self, delivery_id: str) -> bool:
        d = self.deliveries.get(delivery_id)
        if d is None or d.status is not DeliveryStatus.DEAD:
            return False
        now = self._clock.now()
        self.deliveries[delivery_id] = dataclasses.replace(
            d, status=DeliveryStatus.PENDING, next_attempt_at=now
        )
        self._budget_from[delivery_id] = now
        return True

    async def release(self, node: str) -> int:
        held = [
            d
            for d in self.deliveries.values()
            if d.status is DeliveryStatus.SENDING and self._holder.get(d.id) == node
        ]
        for d in held:
            await self.finish(
                d.id, node, d.attempts, Outcome(Verdict.RETRY, 0.0, None, rules.INTERRUPTED)
            )
        return len(held)

    async def prune(self, before: datetime, batch: int) -> int:
        events: dict[str, list[Delivery]] = {}
        for d in self.deliveries.values():
            events.setdefault(d.event_id, []).append(d)
        gone = [
            event
            for event, items in events.items()
            if items[0].created_at < before and not any(d.status in _DUE for d in items)
        ][:batch]
        for event in gone:
            for d in events[event]:
                del self.deliveries[d.id]
                self._attempts.pop(d.id, None)
        return len(gone)

    async def get(self, delivery_id: str) -> Delivery | None:
        return self.deliveries.get(delivery_id)

    async def attempts(self, delivery_id: str) -> Sequence[Attempt]:
        return list(self._attempts.get(delivery_id, []))

    async def stats(self) -> Sequence[ChannelStats]:
        by: dict[str, list[Delivery]] = {}
        for d in self.deliveries.values():
            by.setdefault(d.channel, []).append(d)
        out = []
        for channel, items in sorted(by.items()):
            failed = [
                d
                for d in items
                if d.status in (DeliveryStatus.RETRYING, DeliveryStatus.DEAD) and d.last_attempt_at
            ]
            failed.sort(key=lambda d: d.last_attempt_at or d.created_at)
            delivered = [d.delivered_at for d in items if d.delivered_at is not None]
            out.append(
                ChannelStats(
                    channel,
                    max(delivered) if delivered else None,
                    failed[-1].last_attempt_at if failed else None,
                    failed[-1].last_error if failed else None,
                    sum(1 for d in items if d.status in _DUE),
                    sum(1 for d in items if d.status is DeliveryStatus.DEAD),
                )
            )
        return out

    async def count_for_run(self, run_id: str) -> int:
        return sum(1 for d in self.deliveries.values() if d.run_id == run_id)

    async def list(self, query: DeliveryQuery) -> DeliveryPage:
        # Insertion order is creation order: newest first is the dict reversed.
        found = [d for d in reversed(self.deliveries.values()) if matches(d, query)]
        page: builtins.list[Delivery] = found[query.offset : query.offset + query.limit]
        return DeliveryPage(page, len(found))


__all__ = ["InMemoryOutbox", "run_data"]
