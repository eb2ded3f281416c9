"""HTTP controllers, one module per resource."""

from __future__ import annotations

from typing import Any

from app.controllers.events import RunEventController
from app.controllers.logs import LogController
from app.controllers.notifications import NotificationController
from app.controllers.ops import info, metrics, nodes, reload
from app.controllers.runs import RunController
from app.controllers.system import health, json_schema, openapi_document, ready
from app.controllers.tasks import TaskController
from app.openapi import docs_assets

ROUTE_HANDLERS: list[Any] = [
    LogController,
    NotificationController,
    RunEventController,
    RunController,
    TaskController,
    info,
    nodes,
    reload,
    metrics,
    health,
    ready,
    json_schema,
    openapi_document,
    docs_assets,
]
