"""Public endpoints: liveness, readiness, JSON Schemas of the wire types."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import PathParameter

from app.daemon import Daemon
from app.errors import problem
from app.openapi import problems
from app.schemas import WIRE_TYPES

_SCHEMAS: dict[str, bytes] = {}
SCHEMA_JSON = "application/schema+json"


@get(
    "/health",
    media_type=MediaType.TEXT,
    operation_id="health",
    summary="Liveness: the process answers",
    tags=["system"],
)
async def health() -> str:
    """Liveness: the process answers."""
    return "OK"


@get(
    "/ready",
    media_type=MediaType.TEXT,
    operation_id="ready",
    summary="Readiness: the database answers and the cron loop is alive",
    tags=["system"],
    responses={
        503: ResponseSpec(
            data_container=str, media_type=MediaType.TEXT, description="Service Unavailable"
        )
    },
)
async def ready(daemon: NamedDependency[Daemon]) -> Response[str]:
    """Readiness: the database answers and the cron loop is alive."""
    database = await daemon.database_ready()
    if database and daemon.scheduler_alive:
        return Response("OK", media_type=MediaType.TEXT)
    why = "database unreachable" if not database else "scheduler stopped"
    return Response(f"not ready: {why}", status_code=503, media_type=MediaType.TEXT)


@get(
    "/schemas/{name:str}",
    operation_id="get-schema",
    summary="The JSON Schema of a wire type named in a $schema field",
    tags=["system"],
    responses={
        200: ResponseSpec(
            data_container=dict[str, Any],
            media_type=SCHEMA_JSON,
            description="A JSON Schema (draft 2020-12)",
        ),
        **problems(404, 422),
    },
    media_type=SCHEMA_JSON,
)
async def json_schema(
    request: Request[Any, Any, Any],
    name: Annotated[
        str,
        PathParameter(
            description="Schema file, e.g. Run.json",
            min_length=1,
            max_length=100,
            schema_extra={"enum": [f"{name}.json" for name in sorted(WIRE_TYPES)]},
        ),
    ],
) -> Response[bytes]:
    """The JSON Schema of a wire type named in a ``$schema`` field."""
    type_name = name.removesuffix(".json")
    wire_type = WIRE_TYPES.get(type_name)
    if wire_type is None or not name.endswith(".json"):
        known = ", ".join(f"{n}.json" for n in sorted(WIRE_TYPES))
        return problem(request, 404, f"no schema named {name!r}; known: {known}")
    if type_name not in _SCHEMAS:
        _SCHEMAS[type_name] = msgspec.json.encode(msgspec.json.schema(wire_type))
    return Response(_SCHEMAS[type_name], media_type=SCHEMA_JSON)


@get("/openapi.json", operation_id="openapi", tags=["system"], include_in_schema=False)
async def openapi_document(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The OpenAPI 3.1 document (also at ``/docs/openapi.json``)."""
    return Response(
        msgspec.json.encode(request.app.openapi_schema.to_schema()),
        media_type="application/vnd.oai.openapi+json",
    )
