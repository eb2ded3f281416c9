"""Run events from PostgreSQL: LISTEN on one dedicated connection, fan out in process.

Migration 0003 makes every insert, status change and delete of ``runs`` send a NOTIFY on
``runwarden_runs`` carrying the run's fields, so every daemon sharing the database sees the
changes of all of them, in commit order. One connection per daemon listens (reconnecting
with backoff when it drops); each subscriber gets a bounded queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import re
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from domain.errors import StoreUnavailable
from domain.ports import (
    RunEvent,
    RunEventKind,
    RunEventSource,
    RunSubscription,
    SubscriptionLost,
)
from domain.run import EndReason, Run, RunStatus, TriggeredBy

log = logging.getLogger(__name__)

CHANNEL = "runwarden_runs"
APPLICATION_NAME = "runwarden-events"
"""How the listening connection shows in ``pg_stat_activity``."""
QUEUE_SIZE = 1000
"""Events a subscriber may fall behind by before it is dropped."""
CONNECT_TIMEOUT = 10.0
HEALTH_INTERVAL = 30.0
"""Seconds between liveness queries on the listening connection (a silent network
partition closes no socket)."""
BACKOFF = (0.5, 30.0)
"""First and longest wait between reconnection attempts, in seconds."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://")


def plain_url(url: str) -> str:
    """The driver-less ``postgresql://`` URL asyncpg takes."""
    return _SCHEME.sub("postgresql://", url, count=1)


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def run_from_payload(body: dict[str, Any]) -> Run:
    """The run a notification describes (see migration 0003 for the payload)."""
    reason = body.get("end_reason")
    created_at = _instant(body["created_at"])
    assert created_at is not None
    return Run(
        id=body["id"],
        task_name=body["task_name"],
        created_at=created_at,
        triggered_by=TriggeredBy(body["triggered_by"]),
        status=RunStatus(body["status"]),
        end_reason=EndReason(reason) if reason is not None else None,
        exit_code=int(body["exit_code"]),
        start_at=_instant(body.get("start_at")),
        end_at=_instant(body.get("end_at")),
        replica_index=int(body["replica_index"]),
        retry_attempt=int(body["retry_attempt"]),
        retry_of_run_id=body.get("retry_of_run_id"),
        external_execution_id=body.get("external_execution_id"),
    )


def _ending(run: Run) -> RunEventKind:
    return RunEventKind.COMPLETED if run.end_reason is EndReason.SUCCESS else RunEventKind.FAILED


def event_kinds(op: str, old_status: str | None, run: Run) -> list[RunEventKind]:
    """The lifecycle events one row change stands for, in order.

    An insert is ``created``, followed by the event of the phase it was inserted in (a
    service instance inserted running, a skipped trigger inserted ended). An update is
    ``started`` (pending -> running) or the ending; other status moves are not lifecycle
    events. A delete is ``deleted``.
    """
    if op == "delete":
        return [RunEventKind.DELETED]
    kinds = [RunEventKind.CREATED] if op == "insert" else []
    if run.status is RunStatus.RUNNING and old_status in (None, RunStatus.PENDING.value):
        kinds.append(RunEventKind.STARTED)
    elif run.status is RunStatus.ENDED and old_status != RunStatus.ENDED.value:
        kinds.append(_ending(run))
    return kinds


class _Subscription(RunSubscription):
    """A bounded queue the hub fills; dropped by the hub when full or the feed is lost."""

    def __init__(self, task_name: str | None, detach: Callable[[], None]) -> None:
        self.task_name = task_name
        # None wakes a waiting subscriber up to notice ``lost``.
        self.queue: asyncio.Queue[RunEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self.lost: str | None = None
        # Also runs if the subscriber is garbage collected without closing, so a stream
        # that never started (its client went away first) holds no slot.
        self._detach = weakref.finalize(self, detach)

    async def next(self) -> RunEvent:
        if self.lost is None:
            event = await self.queue.get()
            if event is not None and self.lost is None:
                return event
        raise SubscriptionLost(self.lost)

    def close(self) -> None:
        self._detach()


def _payload_to(callback: Callable[[str], None]) -> Callable[[object, int, str, str], None]:
    def listener(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            callback(payload)
        except Exception:
            log.exception("a notification handler failed")

    return listener


class PostgresRunEvents(RunEventSource):
    """Listens on ``runwarden_runs`` through one dedicated connection and fans out."""

    def __init__(self, url: str) -> None:
        self._url = plain_url(url)
        # Keyed by id: the dict must not keep subscriptions alive (see _Subscription).
        self._subs: dict[int, weakref.ReferenceType[_Subscription]] = {}
        self._seq = itertools.count(1)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listened = False
        self._channels: dict[str, Callable[[str], None]] = {}

    def on_channel(self, channel: str, callback: Callable[[str], None]) -> None:
        """Also hand every notification on ``channel`` (its payload) to ``callback``, on
        the same connection; call before ``start``. The callback must not block."""
        self._channels[channel] = callback

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up (events are flowing)."""
        return self._connected.is_set()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def start(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Start listening; wait up to ``wait`` seconds for the first connection."""
        self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.listening()
        if not self.connected:
            log.warning("run events: not listening yet; retrying in the background")

    async def listening(self) -> None:
        """Return once the listening connection is up."""
        await self._connected.wait()

    async def stop(self) -> None:
        """End every subscription and stop listening; safe to call early or twice."""
        self._drop_all("the daemon is shutting down")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, task_name: str | None = None) -> RunSubscription:
        if not self.connected:
            raise StoreUnavailable("run events are unavailable: not listening to the database")
        key = next(self._seq)
        sub = _Subscription(task_name, functools.partial(self._forget, key))
        self._subs[key] = weakref.ref(sub)
        return sub

    def _forget(self, key: int) -> None:
        self._subs.pop(key, None)

    def _drop(self, key: int, sub: _Subscription, reason: str) -> None:
        sub.lost = reason
        self._subs.pop(key, None)
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)

    def end_streams(self, reason: str) -> None:
        """End every subscription now (sync; run on the event loop), but keep listening."""
        self._drop_all(reason)

    def _drop_all(self, reason: str) -> None:
        for key, ref in list(self._subs.items()):
            sub = ref()
            if sub is not None:
                self._drop(key, sub, reason)
        self._subs.clear()

    def publish(self, payload: str) -> None:
        """Fan one notification out to the subscribers (the LISTEN callback)."""
        if not self._subs:
            return  # bulk writes with nobody watching cost no parsing
        try:
            body = json.loads(payload)
            run = run_from_payload(body)
            kinds = event_kinds(body["op"], body.get("from"), run)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("run events: ignoring a malformed notification: %s", error)
            return
        for kind in kinds:
            event = RunEvent(next(self._seq), kind, run)
            for key, ref in list(self._subs.items()):
                sub = ref()
                if sub is None or sub.lost is not None:
                    continue
                if sub.task_name is not None and sub.task_name != run.task_name:
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._drop(key, sub, f"fell more than {QUEUE_SIZE} events behind")

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.publish(payload)

    async def _listen(self) -> None:
        delay = BACKOFF[0]
        while True:
            self._listened = False
            try:
                conn = await asyncpg.connect(
                    self._url,
                    timeout=CONNECT_TIMEOUT,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                try:
                    await self._serve(conn)
                finally:
                    self._connected.clear()
                    # Events committed while nobody listened are gone: end the streams so
                    # their clients know to catch up.
                    self._drop_all("the database feed was interrupted; events may be missing")
                    conn.terminate()
                problem = "the connection closed"
            except Exception as error:  # whatever it was, the feed must come back
                problem = f"{type(error).__name__}: {error}"
            if self._listened:
                delay = BACKOFF[0]
            log.warning("run events: %s; reconnecting in %.1fs", problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    async def _serve(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until it closes; raises if it stops answering."""
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _c: closed.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        for channel, callback in self._channels.items():
            await conn.add_listener(channel, _payload_to(callback))
        self._connected.set()
        self._listened = True
        log.info("run events: listening on %s", CHANNEL)
        while not closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_INTERVAL):
                    await closed.wait()
            if not closed.is_set():
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await conn.fetchval("SELECT 1")
