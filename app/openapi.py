"""OpenAPI settings, and the problem responses every operation declares."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any, Union

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
    Server,
)
from litestar.static_files import create_static_files_router

from app import schemas as wire_schemas
from app.errors import PROBLEM_JSON
from app.schemas import ErrorModel
from domain.ports import RunEventKind

API_STATUSES = (401, 429)
"""Every ``/api`` operation may answer these: no or a bad token, rate limited."""
HEAD_STATUSES = (414, 431)
"""Every operation may answer these: the HTTP parser refuses an oversized request line or
headers before any route is chosen (:mod:`app.http_limits`)."""
DATABASE_STATUS = 503
"""Operations that read or write the database answer this while it is unreachable."""
EVENT_STREAM = "text/event-stream"
SSE_EVENTS: dict[str, dict[str, tuple[str, bool]]] = {
    "stream-run-log": {"line": ("LogLine", True), "done": ("LogStreamDone", False)},
    "stream-run-events": {kind.value: ("Run", True) for kind in RunEventKind},
}
"""Server-sent events: operationId -> {event name: (schema of its JSON data, has an id)}."""


def event_stream_response(*data_types: type) -> dict[int, ResponseSpec]:
    """The 200 response of a server-sent events route whose events carry ``data_types`` as
    JSON; :data:`SSE_EVENTS` tells :func:`finalize_document` which event carries which."""
    return {
        200: ResponseSpec(
            # The union only puts the types in the document's components; the schema of an
            # event replaces it (_describe_events).
            data_container=Union[data_types],  # noqa: UP007
            media_type=EVENT_STREAM,
            description="The events",
            generate_examples=False,
        )
    }


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Declare problem+json responses, so the document does not show Litestar's own shape."""
    return {
        status: ResponseSpec(
            data_container=ErrorModel,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(status).phrase,
        )
        for status in sorted(set(statuses))
    }


def api_problems(*statuses: int, database: bool = True) -> dict[int, ResponseSpec]:
    """The problems of an ``/api`` operation: ``statuses`` plus 401 and 429, and 503 when it
    touches the database (``database``)."""
    extra = (DATABASE_STATUS,) if database else ()
    return problems(*API_STATUSES, *extra, *statuses)


DOCS_ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"
"""Swagger UI's files, vendored (see VENDORED.md there): ``/docs`` needs no internet."""
DOCS_ASSETS_PATH = "/docs/assets"
_ROOT = "__runwarden_root_path__"

docs_assets = create_static_files_router(
    path=DOCS_ASSETS_PATH,
    directories=[DOCS_ASSETS_DIR],
    name="docs_assets",
    include_in_schema=False,
)


class _OfflineSwagger(SwaggerRenderPlugin):
    """Swagger UI from our own ``/docs/assets``, under the root path a proxy serves us at."""

    def __init__(self) -> None:
        base = f"{_ROOT}{DOCS_ASSETS_PATH}"
        super().__init__(
            path="/",
            js_url=f"{base}/swagger-ui-bundle.js",
            css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>",
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = str(request.scope.get("root_path", "")).encode()
        return super().render(request, openapi_schema).replace(_ROOT.encode(), root)


def openapi_config(version: str, root_path: str = "") -> OpenAPIConfig:
    return OpenAPIConfig(
        title="runwarden",
        version=version,
        description="Cron job manager and process supervisor: every run recorded.",
        path="/docs",
        render_plugins=[_OfflineSwagger()],
        servers=[Server(url=root_path or "/")],
        components=Components(
            security_schemes={
                "bearerAuth": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="Every /api route needs Authorization: Bearer <token>.",
                )
            }
        ),
        create_examples=False,
    )


_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _problem_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=HTTPStatus(status).phrase,
        content={
            PROBLEM_JSON: OpenAPIMediaType(
                schema=Reference(ref=f"#/components/schemas/{ErrorModel.__name__}")
            )
        },
    )


def finalize_document(document: OpenAPI) -> None:
    """Fix what Litestar cannot be told route by route; safe to apply more than once.

    - Every ``/api`` operation declares 401 and 429 problems and the bearer requirement
      (the auth middleware answers them before any route runs), every operation 414 and
      431 (the HTTP parser's).
    - Responses that carry runs link their ids to the operations on a run (:data:`RUN_LINKS`).
    - Litestar's default 400 (its own ``ValidationException`` shape) becomes a problem:
      validation failures are 422 problems here, and any other 400 is a problem too.
    - A body declared ``X | None = None`` is optional, not required.
    - Response headers get a schema (OpenAPI 3.1 requires ``schema`` or ``content``).
    - Wire types that refuse unknown fields declare ``additionalProperties: false``.
    """
    _close_strict_bodies(document)
    _link_runs(document)
    _link_notifications(document)
    _describe_events(document)
    schemes = document.components.security_schemes if document.components else None
    requirement: list[dict[str, list[str]]] = [{name: []} for name in list(schemes or {})[:1]]
    for path, item in (document.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            responses = operation.responses = operation.responses or {}
            default = responses.get("400")
            if isinstance(default, OpenAPIResponse) and PROBLEM_JSON not in (default.content or {}):
                responses["400"] = _problem_response(400)
            is_api = path.startswith("/api")
            for status in (*API_STATUSES, *HEAD_STATUSES) if is_api else HEAD_STATUSES:
                responses.setdefault(str(status), _problem_response(status))
            if is_api and requirement and not operation.security:
                operation.security = requirement
            body = operation.request_body
            if isinstance(body, RequestBody) and _admits_null(body):
                body.required = False
            for response in responses.values():
                for header in (getattr(response, "headers", None) or {}).values():
                    if isinstance(header, OpenAPIHeader) and header.schema is None:
                        header.schema = Schema(type=OpenAPIType.STRING)


RUN_OPERATIONS = {
    "get-run": ("GetRun", "The run"),
    "get-task-run": ("GetTaskRun", "The run, under its task"),
    "get-run-log": ("GetRunLog", "A page of the run's log"),
    "get-run-log-raw": ("GetRunLogRaw", "The run's whole log as text"),
    "stream-run-log": ("StreamRunLog", "The run's log, live"),
    "stop-run": ("StopRun", "Stop the run"),
    "delete-run": ("DeleteRun", "Delete the run (once ended)"),
}
"""The operations on one run: operationId -> (link name, description)."""
RUN_LINKS = {
    "trigger-task": {"200": "", "201": ""},
    "list-runs": {"200": "/runs/0"},
    "list-task-runs": {"200": "/runs/0"},
}
"""Responses that carry a run: operationId -> {status: JSON pointer to the run in the body}."""


NOTIFICATION_LINKS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "list-notifiers": {"200": ("/notifiers/0", {"test-notifier": "name"})},
    "test-notifier": {"201": ("", {"get-notification": "id", "retry-notification": "id"})},
    "list-notifications": {
        "200": ("/notifications/0", {"get-notification": "id", "retry-notification": "id"})
    },
}
"""Responses that name a notifier or a delivery: operationId -> {status: (JSON pointer to
it, {target operationId: its field})}; the target's one path parameter takes the field."""


def _link_notifications(document: OpenAPI) -> None:
    """``links`` from the notifier and delivery listings (and a test's answer) to the
    operations on one notifier or delivery."""
    operations = {op.operation_id: op for op in _operations(document)}
    parameter = {"test-notifier": "name"}
    for source, statuses in NOTIFICATION_LINKS.items():
        operation = operations.get(source)
        if operation is None:
            continue
        for status, (pointer, targets) in statuses.items():
            response = (operation.responses or {}).get(status)
            if not isinstance(response, OpenAPIResponse):
                continue
            response.links = {
                "".join(part.title() for part in target.split("-")): Link(
                    operation_id=target,
                    parameters={
                        parameter.get(target, "notificationId"): (
                            f"$response.body#{pointer}/{field}"
                        )
                    },
                )
                for target, field in targets.items()
                if target in operations
            }


def _link_runs(document: OpenAPI) -> None:
    """OpenAPI ``links`` from every response that carries a run to every operation on it, so
    a client (or a stateful fuzzer) learns where a run's id and task name go."""
    operations = _operations(document)
    taken = {op.operation_id for op in operations}
    for operation in operations:
        for status, pointer in RUN_LINKS.get(operation.operation_id or "", {}).items():
            response = (operation.responses or {}).get(status)
            if not isinstance(response, OpenAPIResponse):
                continue
            response.links = {
                name: Link(
                    operation_id=target,
                    parameters={
                        "runId": f"$response.body#{pointer}/id",
                        **(
                            {}
                            if target == "get-run"
                            else {"taskName": f"$response.body#{pointer}/task_name"}
                        ),
                    },
                    description=description,
                )
                for target, (name, description) in RUN_OPERATIONS.items()
                if target in taken
            }


def _describe_events(document: OpenAPI) -> None:
    """The schema of a server-sent event stream describes one event (OpenAPI 3.1 has no
    ``itemSchema``): its name, its ``id`` when it has one, and the JSON its ``data`` holds."""
    for operation in _operations(document):
        events = SSE_EVENTS.get(operation.operation_id or "")
        response = (operation.responses or {}).get("200")
        if not events or not isinstance(response, OpenAPIResponse) or not response.content:
            continue
        response.content[EVENT_STREAM].schema = Schema(
            description="One event; comments (`: keep-alive` and the like) carry no data",
            one_of=[
                Schema(
                    type=OpenAPIType.OBJECT,
                    properties={
                        "event": Schema(const=name),
                        "id": Schema(type=OpenAPIType.STRING, pattern="^[0-9]+$"),
                        "data": Schema(
                            type=OpenAPIType.STRING,
                            content_media_type="application/json",
                            content_schema=Reference(ref=f"#/components/schemas/{data}"),
                        ),
                    },
                    required=["data", "event", "id"] if has_id else ["data", "event"],
                )
                for name, (data, has_id) in events.items()
            ],
        )


def _operations(document: OpenAPI) -> list[Operation]:
    return [
        operation
        for item in (document.paths or {}).values()
        for operation in (getattr(item, method) for method in _METHODS)
        if operation is not None
    ]


def _close_strict_bodies(document: OpenAPI) -> None:
    """Wire types that refuse unknown fields say so (``additionalProperties: false``)."""
    found = (document.components.schemas or {}) if document.components else {}
    for name, schema in found.items():
        wire_type = getattr(wire_schemas, name, None)
        config = getattr(wire_type, "__struct_config__", None)
        if isinstance(schema, Schema) and config is not None and config.forbid_unknown_fields:
            schema.additional_properties = False


def _admits_null(body: RequestBody) -> bool:
    for media in body.content.values():
        schema = media.schema
        alternatives = (schema.one_of or []) if isinstance(schema, Schema) else []
        if any(isinstance(a, Schema) and a.type == OpenAPIType.NULL for a in alternatives):
            return True
    return False


class _FinalizingOpenAPIPlugin(OpenAPIPlugin):
    """Litestar's OpenAPI plugin, finalizing the document each time it builds it."""

    __slots__ = ()

    def _build_openapi(self) -> OpenAPI:
        document = super()._build_openapi()
        finalize_document(document)
        return document


def finalize_openapi(app: Litestar) -> None:
    """Have the app's document finalized whenever Litestar builds it, before anything
    serves it.

    Litestar builds the document on first use (a request for it) and keeps it. It used to
    be built at startup to be finalized there: ~7 MB that a daemon nobody asks for its
    API description does not need (issue 14: idle RSS). The plugin takes no hook and has
    slots, so the app's instance becomes the subclass above (same layout, same state).
    """
    plugin = app.plugins.get(OpenAPIPlugin)
    if type(plugin) is OpenAPIPlugin:
        plugin.__class__ = _FinalizingOpenAPIPlugin
