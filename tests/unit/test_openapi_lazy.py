"""The OpenAPI document is built on first use, finalized, and not at startup (idle RSS)."""

from __future__ import annotations

from litestar import Litestar, get
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.testing import TestClient

from app.openapi import HEAD_STATUSES, finalize_openapi, openapi_config


@get("/api/thing", sync_to_thread=False)
def thing() -> dict[str, int]:
    return {"n": 1}


def make_app() -> Litestar:
    app = Litestar(route_handlers=[thing], openapi_config=openapi_config("0.0.0", ""))
    finalize_openapi(app)
    return app


def test_the_document_is_not_built_until_asked_for() -> None:
    app = make_app()
    with TestClient(app) as client:
        assert client.get("/api/thing").json() == {"n": 1}
        assert app.plugins.get(OpenAPIPlugin)._openapi is None


def test_the_document_built_on_first_use_is_finalized() -> None:
    app = make_app()
    operation = app.openapi_schema.paths["/api/thing"].get  # type: ignore[index]
    assert operation is not None
    assert {str(s) for s in HEAD_STATUSES} <= set(operation.responses or {})
    finalize_openapi(app)  # twice is harmless
    assert app.openapi_schema is app.openapi_schema
