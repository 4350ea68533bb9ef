"""Build a function's FastAPI app and its Lambda entry point.

Every HTTP function is the same three lines: its routers, `create_app`, `lambda_handler`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

import creditml
from creditml.api.problems import install_problem_handlers

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
    """The Lambda entry for an HTTP API (payload v2) function serving `app`.

    Logs carry the API Gateway request id as correlation id; the event itself is never logged
    (it holds bearer tokens), and traces do not capture responses (they hold tokens too).
    """
    logger = Logger(service=service)
    tracer = Tracer(service=service)
    metrics = Metrics(service=service)
    # problem+json is text: without this Mangum would base64-encode every error body.
    asgi = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])

    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False
    )
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        # Mangum types its own context protocol; Lambda's object satisfies both.
        response: dict[str, Any] = asgi(event, context)  # type: ignore[arg-type]
        return response

    # Powertools' decorators are untyped; the wrapped callable keeps the signature above.
    return cast(LambdaHandler, handler)
