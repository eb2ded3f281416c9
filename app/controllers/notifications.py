"""Notifications: the channels, a test through the outbox, the deliveries, a manual retry."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from app import presenters_notify, schemas
from app.controllers.params import DEFAULT_LIMIT, Limit, Offset, TaskNameQuery
from app.daemon import Daemon
from app.errors import ProblemError
from app.openapi import api_problems
from domain import notify_services
from domain.notifications import DeliveryStatus
from domain.outbox import DeliveryQuery

NotifierPath = Annotated[
    str, PathParameter(name="name", description="Notifier name", min_length=1, max_length=100)
]
NotificationPath = Annotated[
    str,
    PathParameter(
        name="notificationId", description="Notification id (UUID)", min_length=1, max_length=100
    ),
]
_STATUSES = [s.value for s in DeliveryStatus]
_STATUS_WORD = "(?:" + "|".join(_STATUSES) + ")"
STATUS_LIST_PATTERN = rf"^\s*(?:{_STATUS_WORD}\s*(?:,\s*{_STATUS_WORD}\s*)*)?$"
"""A delivery status, or a comma-separated list of them; blank means no filter."""
StatusQuery = Annotated[
    str | None,
    QueryParameter(
        description="Filter by status: " + ", ".join(_STATUSES) + ", or a comma list of them",
        # In the document only: _statuses validates, naming the unknown word.
        schema_extra={"pattern": STATUS_LIST_PATTERN},
    ),
]
ChannelQuery = Annotated[str | None, QueryParameter(description="Filter by notifier name")]
RunIdQuery = Annotated[str | None, QueryParameter(description="Filter by run id", max_length=100)]
WaitQuery = Annotated[bool, QueryParameter(description="Answer once it was delivered or given up")]
WaitTimeout = Annotated[
    int, QueryParameter(description="With wait: at most this many seconds", ge=1, le=3600)
]


def _statuses(text: str | None) -> list[DeliveryStatus]:
    words = [w.strip() for w in (text or "").split(",") if w.strip()]
    bad = [w for w in words if w not in _STATUSES]
    if bad:
        raise ProblemError(
            422,
            "validation failed",
            errors=[
                schemas.ErrorDetail(
                    location="query.status",
                    message=f"unknown status {bad[0]!r}; use " + ", ".join(_STATUSES),
                    value=text,
                )
            ],
        )
    return [DeliveryStatus(w) for w in words]


def _outbox(daemon: Daemon) -> Any:
    if daemon.outbox is None:
        raise ProblemError(503, "notifications are not set up on this daemon")
    return daemon.outbox


class NotificationController(Controller):
    """Channels and deliveries."""

    path = "/api"
    tags = ["notifications"]

    @get(
        "/notifiers",
        operation_id="list-notifiers",
        summary="The notification channels",
        description="Every [notifiers.NAME] of the config with its last success and failure "
        "and how many deliveries wait or are dead. Secrets, URLs' paths and header values "
        "are never shown.",
        responses=api_problems(),
    )
    async def list_notifiers(
        self, request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
    ) -> schemas.NotifiersBody:
        channels = list(daemon.config.notify.notifiers.values())
        stats = await _outbox(daemon).stats() if channels else []
        return presenters_notify.notifiers(request, channels, stats)

    @post(
        "/notifiers/{name:str}/test",
        operation_id="test-notifier",
        summary="Send a test notification",
        description="Puts a notify.test for this channel in the outbox, as every event goes "
        "(201, pending). With wait=true it answers once it was delivered or given up, or "
        "after wait_timeout seconds, with the notification as it is then.",
        status_code=201,
        responses=api_problems(404, 422),
    )
    async def test_notifier(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        name: NotifierPath,
        wait: WaitQuery = False,
        wait_timeout: WaitTimeout = 60,
    ) -> schemas.Notification:
        if daemon.relay is None:
            raise ProblemError(503, "notifications are not set up on this daemon")
        delivery = await daemon.relay.test(name, float(wait_timeout) if wait else None)
        return presenters_notify.notification(request, delivery)

    @get(
        "/notifications",
        operation_id="list-notifications",
        summary="List notification deliveries",
        description="Newest first; each is one event to one channel.",
        responses=api_problems(422),
    )
    async def list_notifications(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        status: StatusQuery = None,
        channel: ChannelQuery = None,
        task_name: TaskNameQuery = None,
        run_id: RunIdQuery = None,
    ) -> schemas.NotificationsBody:
        query = DeliveryQuery(
            status=_statuses(status),
            channel=channel or None,
            task_name=task_name or None,
            run_id=run_id or None,
            limit=limit,
            offset=offset,
        )
        page = await notify_services.list_deliveries(_outbox(daemon), query)
        return presenters_notify.notification_page(request, page.deliveries, page.total)

    @get(
        "/notifications/{notificationId:str}",
        operation_id="get-notification",
        summary="One notification delivery with its attempts",
        responses=api_problems(404, 422),
    )
    async def get_notification(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        notification_id: NotificationPath,
    ) -> schemas.Notification:
        found, tries = await notify_services.delivery_with_attempts(
            _outbox(daemon), notification_id
        )
        return presenters_notify.notification(request, found, tries)

    @post(
        "/notifications/{notificationId:str}/retry",
        operation_id="retry-notification",
        summary="Retry a dead notification",
        description="Makes a dead delivery pending again with a fresh retry budget (same "
        "webhook-id); 409 if it is not dead.",
        status_code=200,
        responses=api_problems(404, 409, 422),
    )
    async def retry_notification(
        self,
        request: Request[Any, Any, Any],
        daemon: NamedDependency[Daemon],
        notification_id: NotificationPath,
    ) -> schemas.Notification:
        found = await notify_services.retry_delivery(_outbox(daemon), notification_id)
        if daemon.relay is not None:
            daemon.relay.wake()
        return presenters_notify.notification(request, found)
