"""The one place where errors become RFC 9457 problem details."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from msgspec import UNSET

from app.config import ConfigError
from app.schemas import ErrorDetail, ErrorModel
from app.security import REQUEST_ID
from app.urls import schema_url
from domain.errors import (
    DomainError,
    IllegalTransition,
    InvalidFilter,
    NotAService,
    NotificationNotDead,
    NotificationNotFound,
    NotifierNotFound,
    NotTriggerable,
    RunNotActive,
    RunNotFound,
    RunStillActive,
    ServiceInstance,
    StoreUnavailable,
    TaskNotFound,
    TriggerForbidden,
    TriggerSkipped,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Python parameter names whose wire names differ (path templates use camelCase).
_WIRE_NAMES = {"task_name_path": "taskName", "run_id": "runId", "data": ""}

_DOMAIN_STATUS: dict[type[DomainError], int] = {
    TaskNotFound: 404,
    RunNotFound: 404,
    TriggerForbidden: 403,
    RunNotActive: 409,
    RunStillActive: 409,
    NotTriggerable: 409,
    TriggerSkipped: 409,
    ServiceInstance: 409,
    NotAService: 400,
    IllegalTransition: 409,
    InvalidFilter: 422,
    StoreUnavailable: 503,
    NotifierNotFound: 404,
    NotificationNotFound: 404,
    NotificationNotDead: 409,
}


class ProblemError(Exception):
    """Raised by controllers for a problem that has no domain error (e.g. a 409 with a run)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        self.status = status
        self.detail = detail
        self.extra = extra
        super().__init__(detail)


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    errors: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    body = ErrorModel(
        schema=schema_url(request, "ErrorModel"),
        type="about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=errors if errors else UNSET,
        **extra,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _location(source: str | None, key: str | None) -> str:
    name = _WIRE_NAMES.get(key or "", key or "")
    return f"{source or 'body'}.{name}" if name else (source or "body")


def _sent_value(request: Request[Any, Any, Any], source: str | None, key: str | None) -> Any:
    if key is None:
        return None
    name = _WIRE_NAMES.get(key, key)
    if source == "query":
        values = request.query_params.getall(name, [])
        return values[0] if len(values) == 1 else (values or None)
    if source == "path":
        return request.scope.get("path_params", {}).get(name)
    if source == "header":
        return request.headers.get(name)
    return None


def validation_problem(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[bytes]:
    items = exc.extra if isinstance(exc.extra, list) else []
    # Litestar re-checks every parameter one by one after a failure and reports those the
    # request left out (defaulted, e.g. no body) as a KeyError message "'name'": not errors.
    real = [i for i in items if str(i.get("message")) != f"'{i.get('key')}'"]
    items = real or items
    errors = []
    for item in items:
        source, key = item.get("source"), item.get("key")
        source = getattr(source, "value", source)  # Litestar passes a ParamType enum
        errors.append(
            ErrorDetail(
                location=_location(source, key),
                message=str(item.get("message") or "invalid value"),
                value=_sent_value(request, source, key),
            )
        )
    return problem(request, 422, "validation failed", errors=errors or None)


def invalid_filter_problem(request: Request[Any, Any, Any], exc: InvalidFilter) -> Response[bytes]:
    error = ErrorDetail(location=f"query.{exc.field}", message=exc.message, value=exc.value)
    return problem(request, 422, "validation failed", errors=[error])


def domain_problem(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    if isinstance(exc, InvalidFilter):
        return invalid_filter_problem(request, exc)
    status = next((s for t, s in _DOMAIN_STATUS.items() if isinstance(exc, t)), 400)
    headers = {"Retry-After": "5"} if status == 503 else None
    if isinstance(exc, TriggerSkipped):
        return problem(request, status, str(exc), headers=headers, run_id=exc.run_id)
    return problem(request, status, str(exc), headers=headers)


def http_problem(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, ValidationException):
        # Litestar reports bad bodies and parameters as 400; the contract says 422.
        return validation_problem(request, exc)
    status = exc.status_code
    detail = exc.detail or HTTPStatus(status).phrase
    # scope["path"] is the path the client sent (root path included); request.url.path
    # would prefix the root path a second time.
    path = request.scope["path"]
    if status == 405:
        detail = f"method {request.method} is not allowed on {path}"
    elif status == 404 and detail == "Not Found":
        detail = f"no route matches {path}"
    return problem(request, status, detail, headers=dict(exc.headers or {}) or None)


def config_problem(request: Request[Any, Any, Any], exc: ConfigError) -> Response[bytes]:
    """A config file that cannot be loaded (a reload): every problem, as ``validate``."""
    errors = [
        ErrorDetail(
            location=".".join(p for p in ("config", item.table, item.key) if p),
            message=f"{item.message}; {item.hint}" if item.hint else item.message,
            value=str(item),
        )
        for item in exc.problems
    ]
    detail = f"the config file has {len(errors)} problem(s); nothing was changed"
    return problem(request, 422, detail, errors=errors)


def controller_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    return problem(request, exc.status, exc.detail, **exc.extra)


def internal_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    request_id = REQUEST_ID.get()
    log.error(
        "unhandled error on %s %s (request id %s)",
        request.method,
        request.scope["path"],
        request_id,
        exc_info=exc,
    )
    detail = f"internal error; the daemon's log has the details under request id {request_id}"
    return problem(request, 500, detail)


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    ProblemError: controller_problem,
    ConfigError: config_problem,
    DomainError: domain_problem,
    HTTPException: http_problem,
    Exception: internal_problem,
}
