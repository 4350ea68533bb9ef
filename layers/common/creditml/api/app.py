"""Build a function's FastAPI app and its Lambda entry point.

Every HTTP function is the same three lines: its routers, `create_app`, `lambda_handler`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

import creditml
from creditml.api.problems import install_problem_handlers
from creditml.observability import observed

API_TITLE = "CreditML"
API_DESCRIPTION = (
    "Serverless ML predictions with prepaid-credit billing. Errors are RFC 9457 problem "
    "details with a stable `code`. Credits are integers."
)

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def create_app(*routers: APIRouter) -> FastAPI:
    """A FastAPI app serving `routers`, with problem-details errors.

    Function apps do not serve their own OpenAPI/docs: one document for the whole API is
    served by the docs function (creditml.api.catalog).
    """
    app = FastAPI(
        title=API_TITLE,
        description=API_DESCRIPTION,
        version=creditml.__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router)
    app.state.routers = routers
    return app


def served_routes(app: FastAPI) -> set[str]:
    """Every "METHOD /path" an app built by create_app serves (for the contract test)."""
    return {
        f"{method} {route.path}"
        for router in app.state.routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


def lambda_handler(app: FastAPI, service: str) -> LambdaHandler:
    """The Lambda entry of HTTP API (payload v2) function `service`, serving `app`.

    Observed as `service` (creditml.observability): JSON logs whose correlation id is API
    Gateway's request id, traces without responses, metrics flushed per invocation.
    """
    # problem+json is text: without this Mangum would base64-encode every error body.
    asgi = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])

    @observed(service, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        # Mangum types its own context protocol; Lambda's object satisfies both.
        response: dict[str, Any] = asgi(event, context)  # type: ignore[arg-type]
        return response

    return handler
