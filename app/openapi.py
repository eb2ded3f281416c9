"""OpenAPI settings, and the problem responses every operation declares."""

from __future__ import annotations

from http import HTTPStatus

from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import ScalarRenderPlugin

from app.errors import PROBLEM_JSON
from app.schemas import ErrorModel


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Declare problem+json responses, so the document does not show Litestar's own shape."""
    return {
        status: ResponseSpec(
            data_container=ErrorModel,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(status).phrase,
        )
        for status in statuses
    }


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="runwarden",
        version=version,
        description="Cron job manager and process supervisor: every run recorded.",
        path="/docs",
        render_plugins=[ScalarRenderPlugin(path="/")],
        create_examples=False,
    )
