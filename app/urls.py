"""URLs the API hands out, built from the URL the client used."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection


def base_url(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Scheme, host and root path of the request, without a trailing slash."""
    return str(connection.base_url).rstrip("/")


def schema_url(connection: ASGIConnection[Any, Any, Any, Any], name: str) -> str:
    """Where ``GET /schemas/<name>.json`` serves the JSON Schema of a wire type."""
    return f"{base_url(connection)}/schemas/{name}.json"
