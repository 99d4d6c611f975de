"""One mapper from exceptions to RFC 9457 ``application/problem+json`` responses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ticketing.shared.errors import TicketingError

PROBLEM_JSON = "application/problem+json"
STATUS_BY_KIND = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unprocessable": 422,
    "rate_limited": 429,
    "unavailable": 503,
}
log = structlog.get_logger(__name__)


def problem_body(
    status: int, detail: str, instance: str, *, title: str | None = None, **extensions: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    return {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extensions,
    }


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[dict[str, Any]]:
    body = problem_body(status, detail, request.url.path, title=title, **extensions)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_errors(extra: Any) -> list[dict[str, str]]:
    """Litestar's validation ``extra`` as ``[{field, message, source}]``, field named by path."""
    errors: list[dict[str, str]] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        field = str(item.get("key") or "")
        if not field and " - at `$." in message:
            message, _, path = message.partition(" - at `$.")
            field = path.rstrip("`")
        source = item.get("source", "body")
        errors.append(
            {
                "field": field or "body",
                "message": message,
                "source": str(getattr(source, "value", source)),
            }
        )
    return errors


def handle_ticketing_error(
    request: Request[Any, Any, Any], exc: TicketingError
) -> Response[dict[str, Any]]:
    status = STATUS_BY_KIND.get(exc.kind, 400)
    extensions = dict(exc.extensions)
    headers: dict[str, str] = dict(extensions.pop("headers", {}))
    if "retry_after" in extensions:
        headers["Retry-After"] = str(extensions.pop("retry_after"))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif status == 403:
        headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
    return problem_response(
        request, status, exc.detail, title=exc.title, headers=headers or None, **extensions
    )


def handle_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = _field_errors(exc.extra)
    if errors:
        named = ", ".join(sorted({e["field"] for e in errors}))
        detail = f"Invalid value for {named}: {errors[0]['message']}"
    else:
        detail = exc.detail or "The request is not valid."
    return problem_response(request, 400, detail, title="Invalid request", errors=errors)


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status == 404 and exc.detail == "Not Found":
        detail = f"There is nothing at {request.url.path}; check the path and the id in it."
    else:
        detail = exc.detail if status < 500 else HTTPStatus(status).description
    return problem_response(request, status, detail, headers=exc.headers)


def handle_data_error(request: Request[Any, Any, Any], exc: DataError) -> Response[dict[str, Any]]:
    """A value passed validation but the database cannot store it (e.g. invalid UTF-8)."""
    log.info("value refused by the database", path=request.url.path, error=type(exc.orig).__name__)
    return problem_response(
        request, 400, "A value in the request cannot be stored: check text encoding and ranges."
    )


def handle_unicode_error(
    request: Request[Any, Any, Any], exc: UnicodeError
) -> Response[dict[str, Any]]:
    """Bytes that are not UTF-8 where text is required (the JSON decoder lets this through)."""
    del exc
    return problem_response(request, 400, "The request body is not valid UTF-8 text.")


def handle_database_down(
    request: Request[Any, Any, Any], exc: OperationalError | PoolTimeout
) -> Response[dict[str, Any]]:
    """The database cannot be reached (restarting, network) or has no connection free in time:
    retry shortly, nothing was done."""
    cause = exc.orig if isinstance(exc, OperationalError) else exc
    log.warning("database unavailable", path=request.url.path, error=type(cause).__name__)
    return problem_response(
        request,
        503,
        "The database is unavailable; nothing was changed. Retry shortly.",
        headers={"Retry-After": "1"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return problem_response(request, 500, "An unexpected error occurred; it has been logged.")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    TicketingError: handle_ticketing_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_exception,
    DataError: handle_data_error,
    OperationalError: handle_database_down,
    PoolTimeout: handle_database_down,
    UnicodeError: handle_unicode_error,
    Exception: handle_unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "problem_body", "problem_response"]
