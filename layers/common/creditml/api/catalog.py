"""The whole API in one place: every router of every HTTP function, for the single OpenAPI
document served at /openapi.json (the contract test checks it matches template.yaml).

FastAPI documents what each route declares; `_document_errors` then gives every operation
the error answers it can really get (the request guard's 413/415, the 429 and 503 every
route can meet, 404 on paths with ids, ...), each as `application/problem+json` with the
ProblemDetails schema, and marks Idempotency-Key required where the route refuses to work
without it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

import creditml
from creditml.api.app import API_DESCRIPTION, API_TITLE, MAX_JSON_DEPTH, takes_json_body
from creditml.api.problems import PROBLEM_JSON, PROBLEM_RESPONSES
from creditml.api.routes import api_keys, auth, billing, devices, models, predictions, reports

PROBLEM_SCHEMA = "ProblemDetails"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "The scheme to use: Bearer", "schema": {"type": "string"}}
}
# The answers every operation can get, whatever it does.
_EVERY = {
    422: "The request is not valid: each failing field named (`validation_error`)",
    429: "Too many requests (`rate_limited`); changes nothing; retry after Retry-After",
    500: "Internal server error (`internal_error`); the body says nothing about the cause",
    503: "A dependency or the account is busy (`service_unavailable`, `ledger_busy`); "
    "retry after Retry-After (with the same Idempotency-Key where there is one)",
}
_JSON_BODY = {
    400: "The body is not valid JSON (`malformed_json`)",
    413: "The body is over the size limit (`payload_too_large`, with `maximum`)",
    415: "The body is not sent as `application/json` (`unsupported_media_type`)",
    422: f"The request is not valid (`validation_error`), or its JSON nests more than "
    f"{MAX_JSON_DEPTH} levels (`nesting_too_deep`)",
}
_IDEMPOTENT = {
    400: "The Idempotency-Key header is missing (`idempotency_key_required`)",
    409: "This Idempotency-Key was used with another body (`idempotency_key_reused`)",
}
_MALFORMED_OR_NO_KEY = (
    "The body is not valid JSON (`malformed_json`), or the Idempotency-Key header is "
    "missing (`idempotency_key_required`)"
)
_SECURED = {401: "Missing, invalid or expired access token (`not_authenticated`, `invalid_token`)"}
_NOT_FOUND = {404: "Not found (`*_not_found`), also for what the caller may not see"}
# FastAPI's placeholders, replaced by the descriptions above when a route says no more.
_GENERIC = {str(entry["description"]) for entry in PROBLEM_RESPONSES.values()}


def all_routers() -> list[APIRouter]:
    """The routers of every HTTP function that serves the public API."""
    return [
        auth.router,
        api_keys.router,
        billing.router,
        models.router,
        devices.router,
        predictions.router,
        reports.router,
    ]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the whole API (built once per container)."""
    routes = [route for router in all_routers() for route in router.routes]
    document = get_openapi(
        title=API_TITLE,
        version=creditml.__version__,
        description=API_DESCRIPTION,
        routes=routes,
    )
    schemas = document["components"]["schemas"]
    schemas[PROBLEM_SCHEMA] = {**schemas.pop("Problem"), "title": PROBLEM_SCHEMA}
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                _document_errors(document["paths"][route.path_format][method.lower()], route)
    return document


def _document_errors(operation: dict[str, Any], route: APIRoute) -> None:
    """Give `operation` every error answer `route` can send, as problem details."""
    idempotent = _require_idempotency_key(operation)
    expected = dict(_EVERY)
    if operation.get("security"):  # the caller's own account may be gone, too
        expected.update(_SECURED)
        expected.update(_NOT_FOUND)
    if "{" in route.path_format:
        expected.update(_NOT_FOUND)
    if idempotent:
        expected.update(_IDEMPOTENT)
    if takes_json_body(route):
        expected.update(_JSON_BODY)
        if idempotent:
            expected[400] = _MALFORMED_OR_NO_KEY
    responses: dict[str, Any] = operation["responses"]
    for status, description in expected.items():
        declared = responses.get(str(status), {}).get("description")
        if declared is None or declared in _GENERIC:
            responses[str(status)] = {"description": description}
    for code, response in responses.items():
        if int(code) >= 400:
            _as_problem(int(code), response)


def _as_problem(status: int, response: dict[str, Any]) -> None:
    response["content"] = {
        PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    elif status == 401:
        response["headers"] = _WWW_AUTHENTICATE


def _require_idempotency_key(operation: dict[str, Any]) -> bool:
    """Mark the Idempotency-Key header required (the dependency refuses a request without
    one, but declares it optional to answer that with its own 400); whether it is there."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"] == IDEMPOTENCY_HEADER:
            parameter["required"] = True
            parameter["schema"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[\\x21-\\x7e]{1,255}$",
                "title": IDEMPOTENCY_HEADER,
            }
            return True
    return False
