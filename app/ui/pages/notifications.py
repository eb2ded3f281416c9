"""``/ui/notifications``: the channels with a test button, recent deliveries, retry."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from app.daemon import Daemon
from app.ui.forms import back, read_form
from app.ui.live import respond
from domain import notify_services
from domain.errors import DomainError
from domain.notifications import DeliveryStatus
from domain.outbox import ChannelStats, DeliveryQuery

RECENT = 50


@get("/ui/notifications", include_in_schema=False)
async def notifications_page(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
) -> Template:
    """Channels (never their secrets: type, events, tasks and counters only) and the newest
    deliveries; a dead one can be retried."""
    channels = sorted(daemon.config.notify.notifiers.values(), key=lambda c: c.name)
    outbox = daemon.outbox
    stats: dict[str, ChannelStats] = {}
    deliveries: list[Any] = []
    total = 0
    if outbox is not None:
        if channels:
            stats = {s.channel: s for s in await outbox.stats()}
        page = await notify_services.list_deliveries(outbox, DeliveryQuery(limit=RECENT))
        deliveries, total = list(page.deliveries), page.total
    return respond(
        request,
        daemon,
        "pages/notifications.html",
        "fragments/notifications.html",
        active="Notifications",
        enabled=outbox is not None and daemon.relay is not None,
        channels=[(c, stats.get(c.name, ChannelStats(c.name))) for c in channels],
        specs={c.name: c for c in channels},
        deliveries=deliveries,
        total=total,
        dead=DeliveryStatus.DEAD,
    )


@post("/ui/notifications/channels/{name:str}/test", include_in_schema=False, status_code=303)
async def send_test(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], name: str
) -> Redirect:
    """Put a ``notify.test`` for the channel in the outbox (as the API's test does)."""
    fields = await read_form(request)
    if daemon.relay is None:
        return back(request, fields, "/ui/notifications", "notifications are not set up")
    try:
        delivery = await daemon.relay.test(name[:100], None)
        notice = f"test notification {delivery.id} queued for {name}"
    except DomainError as error:
        notice = str(error)
    return back(request, fields, "/ui/notifications", notice)


@post("/ui/notifications/{delivery_id:str}/retry", include_in_schema=False, status_code=303)
async def retry(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon], delivery_id: str
) -> Redirect:
    """Make a dead delivery pending again with a fresh retry budget."""
    fields = await read_form(request)
    if daemon.outbox is None:
        return back(request, fields, "/ui/notifications", "notifications are not set up")
    try:
        found = await notify_services.retry_delivery(daemon.outbox, delivery_id[:100])
        if daemon.relay is not None:
            daemon.relay.wake()
        notice = f"notification {found.id} to {found.channel} will be retried"
    except DomainError as error:
        notice = str(error)
    return back(request, fields, "/ui/notifications", notice)
