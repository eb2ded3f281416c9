"""Prometheus metrics of one daemon, in a registry of its own (never the global one).

- ``runwarden_runs{task,status,end_reason}``: stored runs, read from the database's
  ``run_counts`` counters at scrape time, so it is the same on every daemon of a cluster
  and survives restarts. ``end_reason`` is ``""`` for runs not ended.
- ``runwarden_run_duration_seconds{task,end_reason}``: how long task runs that *this*
  daemon's dispatcher ended took (start to end); runs that never started and service
  instances (the supervisor's) are not observed.
- ``runwarden_queued_runs{task}``: runs waiting in this daemon's queue for a free slot.
- ``runwarden_http_request_duration_seconds{method,route,status}``: time to the response
  headers, by route template (``/api/tasks/{taskName}/runs``), never by raw path.
- ``runwarden_scheduler_up``, ``runwarden_database_up``, ``runwarden_build_info{version}``.
- ``runwarden_notifications_total{channel,outcome}``: tries of notifications this daemon
  made (``delivered``, ``retry``, ``dead``); ``runwarden_notifications_pending{channel}``
  and ``runwarden_notifications_dead{channel}``: deliveries waiting or given up, from the
  database at scrape time (the same on every daemon).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest

from domain.errors import StoreUnavailable
from domain.run import Run

if TYPE_CHECKING:
    from app.daemon import Daemon

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The Prometheus text format every scraper reads (Litestar adds ``charset=utf-8``)."""

RUN_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)
"""Runs last from milliseconds (``true``) to hours (backups): seconds, log-spaced."""
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric the daemon exports; ``render`` refreshes the scrape-time ones."""

    def __init__(self, version: str) -> None:
        # The ``*_created`` series double the output and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._runs = Gauge(
            "runwarden_runs",
            "Stored runs by task, status and end reason (empty while not ended)",
            ["task", "status", "end_reason"],
            registry=registry,
        )
        self._durations = Histogram(
            "runwarden_run_duration_seconds",
            "Duration of runs this daemon saw end, from start to end",
            ["task", "end_reason"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self._queued = Gauge(
            "runwarden_queued_runs",
            "Runs waiting in this daemon's queue for a free slot",
            ["task"],
            registry=registry,
        )
        self._requests = Histogram(
            "runwarden_http_request_duration_seconds",
            "Time from an HTTP request to its response headers, by route template",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self._scheduler_up = Gauge(
            "runwarden_scheduler_up", "1 while the cron loop runs", registry=registry
        )
        self._database_up = Gauge(
            "runwarden_database_up",
            "1 if the database answered at the last scrape (runwarden_runs is stale while 0)",
            registry=registry,
        )
        self._nodes = Gauge(
            "runwarden_nodes",
            "Nodes of the cluster sharing the database, by whether they heart-beat in time",
            ["alive"],
            registry=registry,
        )
        self._notifications = Counter(
            "runwarden_notifications",
            "Tries of notifications this daemon made, by channel and outcome",
            ["channel", "outcome"],
            registry=registry,
        )
        self._notify_pending = Gauge(
            "runwarden_notifications_pending",
            "Notification deliveries waiting to be sent (pending, retrying, sending)",
            ["channel"],
            registry=registry,
        )
        self._notify_dead = Gauge(
            "runwarden_notifications_dead",
            "Notification deliveries given up (retry them with the API)",
            ["channel"],
            registry=registry,
        )
        # labels() validates and locks on every call: keep each route's child once made.
        self._request_children: dict[tuple[str, str, int], Any] = {}
        build = Gauge("runwarden_build_info", "The running version", ["version"], registry=registry)
        build.labels(version=version).set(1)

    def observe_run(self, run: Run) -> None:
        """Record the duration of a run that just ended (a dispatcher ``on_end`` hook)."""
        if run.start_at is None or run.end_at is None or run.end_reason is None:
            return
        took = max((run.end_at - run.start_at).total_seconds(), 0.0)
        self._durations.labels(task=run.task_name, end_reason=run.end_reason.value).observe(took)

    def observe_notification(self, channel: str, outcome: str) -> None:
        """Count one try of a notification (a relay ``on_outcome`` hook)."""
        self._notifications.labels(channel=channel, outcome=outcome).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request."""
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(method=method, route=route, status=str(status))
            self._request_children[key] = child
        child.observe(seconds)

    async def render(self, daemon: Daemon) -> bytes:
        """Refresh the scrape-time metrics from ``daemon`` and its database; the text."""
        try:
            counts = await daemon.repo.counts()
            nodes = await daemon.nodes()
            channels = await daemon.outbox.stats() if daemon.outbox is not None else []
        except StoreUnavailable as exc:
            log.warning("metrics: run counts unavailable (%s)", exc)
            self._database_up.set(0)
        else:
            self._database_up.set(1)
            # No await from here on: a concurrent scrape never sees a half-filled gauge.
            self._runs.clear()
            self._notify_pending.clear()
            self._notify_dead.clear()
            known = daemon.config.notify.notifiers
            for name in known:
                self._notify_pending.labels(channel=name).set(0)
                self._notify_dead.labels(channel=name).set(0)
            for stats in channels:
                self._notify_pending.labels(channel=stats.channel).set(stats.pending)
                self._notify_dead.labels(channel=stats.channel).set(stats.dead)
            alive = sum(1 for node in nodes if node.alive)
            self._nodes.labels(alive="true").set(alive)
            self._nodes.labels(alive="false").set(len(nodes) - alive)
            for count in counts:
                reason = count.end_reason.value if count.end_reason is not None else ""
                self._runs.labels(
                    task=count.task_name, status=count.status.value, end_reason=reason
                ).set(count.n)
        self._queued.clear()
        for name, task in daemon.tasks.items():
            if not task.is_service:
                self._queued.labels(task=name).set(daemon.dispatcher.queued_count(name))
        self._scheduler_up.set(1 if daemon.scheduler_alive else 0)
        return _generate_latest(self.registry)

    def middleware(self) -> DefineMiddleware:
        """The ASGI middleware that times every routed HTTP request into this registry."""
        return DefineMiddleware(RequestTimer, metrics=self)


class RequestTimer:
    """Times routed requests to their response headers (or to the exception raised).

    Runs inside Litestar's routing, so ``path_template`` is set; unrouted requests (404,
    405) are not observed, which keeps the ``route`` label to the API's templates.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = str(scope.get("path_template") or "<unrouted>")
        method = str(scope.get("method", ""))
        observed = False

        async def timed_send(message: Message) -> None:
            nonlocal observed
            if message["type"] == "http.response.start" and not observed:
                observed = True
                status = int(message["status"])
                self.metrics.observe_request(method, route, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception as exc:
            if not observed:
                status = exc.status_code if isinstance(exc, HTTPException) else 500
                self.metrics.observe_request(method, route, status, time.perf_counter() - started)
            raise


__all__ = ["CONTENT_TYPE", "Metrics", "RequestTimer"]
