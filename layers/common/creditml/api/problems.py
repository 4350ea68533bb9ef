"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every 4xx/5xx the API sends is `application/problem+json` with `type`, `title`, `status`,
`detail` and a stable `code`. Domain errors carry their own status and code; validation errors
are 422 `validation_error` listing each failing field; malformed JSON is 400 `malformed_json`;
anything unexpected is a 500 `internal_error` whose body says nothing about the cause.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditml import observability
from creditml.errors import DomainError, ServiceUnavailable

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://errors.creditml.dev/"

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Authentication required"),
    403: ("forbidden", "You are not allowed to do this"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal server error"),
}


# 401 names the scheme (RFC 6750); 503 tells clients when a retry is worth it (RFC 9110):
# the conditions behind it (a busy account, an unreadable signing key) clear in moments.
RETRY_AFTER_SECONDS = 1
_HEADERS = {
    401: {"WWW-Authenticate": "Bearer"},
    # Every 429 says when to retry too (RateLimited gives its own `retry_after`).
    429: {"Retry-After": str(RETRY_AFTER_SECONDS)},
    503: {"Retry-After": str(RETRY_AFTER_SECONDS)},
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the failing member, e.g. body.password")
    message: str
    type: str


class Problem(BaseModel):
    """The error body of every failed request."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code")
    errors: list[FieldError] | None = None


def problem_response(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem-details response; `extra` adds members such as balance/required."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        **extra,
    }
    headers = _HEADERS.get(status)
    if "retry_after" in extra:  # a 429 says exactly when a retry can succeed
        headers = {**(headers or {}), "Retry-After": str(extra["retry_after"])}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


def error_response(error: DomainError) -> JSONResponse:
    """A domain error's problem details (for the handlers, and middleware that refuses a
    request before any route runs)."""
    return problem_response(error.status, error.code, error.title, error.detail, **error.extra)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return error_response(exc)


def sent_as_json(request: Request) -> bool:
    """Whether the request body is labelled JSON (no Content-Type counts as JSON)."""
    content_type = request.headers.get("content-type", "application/json").lower()
    return content_type.split(";")[0].strip().endswith(("/json", "+json"))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem_response(
            400, "malformed_json", "Malformed JSON", "The request body is not valid JSON."
        )
    # FastAPI reads a body as JSON only when it is labelled JSON; say so instead of
    # reporting a confusing "body is not an object".
    if not sent_as_json(request) and any(
        tuple(error.get("loc", ())) == ("body",) for error in errors
    ):
        return problem_response(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the request body as JSON with Content-Type: application/json.",
        )
    fields = [
        {
            "field": _field_path(error.get("loc", ())),
            "message": str(error.get("msg", "invalid")),
            "type": str(error.get("type", "invalid")),
        }
        for error in errors
    ]
    names = ", ".join(field["field"] for field in fields)
    return problem_response(
        422,
        "validation_error",
        "The request is not valid",
        f"Invalid fields: {names}" if names else "The request is not valid",
        errors=fields,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "Request failed"))
    response = problem_response(exc.status_code, code, title)
    for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
        response.headers[name] = value
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error an app can raise to problem details."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    app.add_middleware(_UnexpectedErrors)


class _UnexpectedErrors:
    """Outermost catch (a plain ASGI middleware: Starlette's BaseHTTPMiddleware costs
    about a millisecond a request). Logs the stack for operators, answers without it.

    The log is one JSON line through the function's logger: the exception's type and stack,
    the request id, method and route, and nothing of the request's headers (bearer tokens,
    cookies) or body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            observability.logger().exception("Unhandled error", extra=_request_facts(scope))
            if started:  # too late for a clean answer; let the runtime report it
                raise
            await _unexpected(exc)(scope, receive, send)


def _unexpected(error: Exception) -> JSONResponse:
    """500 internal_error, or 503 service_unavailable (with Retry-After) when an AWS call
    failed for a reason that passes: throttling, an error on AWS's side, a lost reply."""
    from creditml.storage.clients import transient_failure  # AWS libraries: error path only

    if transient_failure(error):
        return problem_response(503, ServiceUnavailable.code, ServiceUnavailable.title)
    return problem_response(500, *_HTTP_CODES[500])


def _request_facts(scope: Scope) -> dict[str, Any]:
    """Which request failed: method, route template (the raw path when no route matched)
    and, behind API Gateway, its request id. Taken from this request's own event, so a
    concurrent invocation's id (one process serves them all locally) cannot stand in."""
    route = scope.get("route")
    facts: dict[str, Any] = {
        "method": scope.get("method"),
        "route": getattr(route, "path_format", None) or scope.get("path"),
    }
    event = scope.get("aws.event")
    request_id = event.get("requestContext", {}).get("requestId") if event else None
    if request_id:
        facts["correlation_id"] = request_id
    return facts


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI `responses` entry: this status answers with a Problem."""
    return {"model": Problem, "description": description}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": title, "content": {PROBLEM_JSON: {}}}
    for status, (_, title) in {
        400: _HTTP_CODES[400],
        401: _HTTP_CODES[401],
        422: ("validation_error", "Validation error"),
        500: _HTTP_CODES[500],
    }.items()
}
