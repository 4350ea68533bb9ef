"""Build a function's FastAPI app and its Lambda entry point.

Every HTTP function is the same three lines: its routers, `create_app`, `lambda_handler`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import creditml
from creditml.api.problems import error_response, install_problem_handlers, problem_response
from creditml.errors import DomainError, NestingTooDeep, PayloadTooLarge, UnsupportedMediaType
from creditml.observability import observed
from creditml.settings import get_settings

API_TITLE = "CreditML"
API_DESCRIPTION = (
    "Serverless ML predictions with prepaid-credit billing. Errors are RFC 9457 problem "
    "details with a stable `code`. Credits are integers."
)
# Deepest JSON nesting a request body may have. The deepest legitimate body is a prediction
# with rows as objects ({"inputs": [{...}]}, depth 3); the margin costs nothing, while a
# body of 100,000 `[` would exhaust the parser's recursion (a 500) if it reached it.
MAX_JSON_DEPTH = 32
# Largest body of a route whose body is a declared model (credentials, amounts, a name and
# description): far above any legitimate one, and small enough that scanning a hostile body
# costs next to nothing. Routes that read their own body (predictions: up to
# PREDICT_MAX_ROWS rows) take up to the MAX_REQUEST_BYTES setting.
MAX_MODEL_BODY_BYTES = 64 * 1024

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def create_app(
    *routers: APIRouter,
    allow_from: Sequence[APIRouter] = (),
    max_body_bytes: int | None = None,
) -> FastAPI:
    """A FastAPI app serving `routers`, with problem-details errors and the request guard
    (405 with `Allow`, 415, 413, too-deep JSON; see RequestGuard).

    `allow_from` adds routers served elsewhere whose methods a 405 names (the docs
    function answers every request no other function's route claims). `max_body_bytes`
    defaults to the MAX_REQUEST_BYTES setting.

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
    # Added first, so it runs inside the outermost catch of install_problem_handlers.
    app.add_middleware(
        RequestGuard,
        routes=[route for router in routers for route in router.routes],
        elsewhere=[route for router in allow_from for route in router.routes],
        max_body_bytes=max_body_bytes,
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


def takes_json_body(route: APIRoute) -> bool:
    """Whether `route` reads a JSON request body (a model parameter, or a body it parses
    itself and documents through `openapi_extra`)."""
    return route.body_field is not None or "requestBody" in (route.openapi_extra or {})


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, with no charset or UTF-8 (RFC 8259)."""
    if not content_type:
        return False
    media, *parameters = (part.strip().lower() for part in content_type.split(";"))
    kind, _, subtype = media.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_SCAN_CHUNK = 64 * 1024
_STEP = [0] * 256
for _open, _close in (b"[]", b"{}"):
    _STEP[_open], _STEP[_close] = 1, -1


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in `body`, brackets inside strings aside;
    with `stop_above`, the scan stops in the first chunk that goes deeper (or closes more
    than it opened), so a deep body costs little however long it is.

    No recursion and no parse: C-speed passes (escapes, then strings, removed; brackets
    kept), then running sums in chunks. Linear in the brackets: for a 1-3 MB prediction a
    tenth of what parsing it costs, and never more than parsing a valid body of the same
    size. On malformed JSON the figure is an estimate (the parser then refuses the body).
    """
    if b"\\" in body:  # escapes (\" among them) exist only inside strings
        body = _ESCAPE.sub(b"", body)
    marks = body.translate(None, _NOT_STRUCTURE)
    if b'"' in marks:
        # Adjacent quotes delimit a string (or join two): either way no structure between.
        marks = marks.replace(b'""', b"")
        if b'"' in marks:
            marks = _STRING.sub(b"", marks)
    deepest = level = 0
    for start in range(0, len(marks), _SCAN_CHUNK):
        levels = list(
            accumulate(map(_STEP.__getitem__, marks[start : start + _SCAN_CHUNK]), initial=level)
        )
        deepest, level = max(deepest, max(levels)), levels[-1]
        # Deeper than asked: decided. Below zero: a close with nothing open, where the
        # parser stops (no deeper than what was summed so far).
        if stop_above is not None and (deepest > stop_above or min(levels) < 0):
            break
    return deepest


class RequestGuard:
    """Answers what must never reach a route, before anything is parsed (a plain ASGI
    middleware, like creditml.api.problems' outermost catch):

    - a method the path does not serve: 405 with `Allow` naming the methods it does;
    - a JSON-body route sent anything but JSON: 415 `unsupported_media_type`;
    - a body over `max_body_bytes`: 413 `payload_too_large` (read no further);
    - JSON nested deeper than MAX_JSON_DEPTH: 422 `nesting_too_deep`.

    Routes without a body never have theirs read. Each answer changes nothing.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        elsewhere: Sequence[BaseRoute],
        max_body_bytes: int | None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.elsewhere = elsewhere
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        if route is None:
            allowed = self._allowed(scope)
            # (A method listed is another function's route: this app does not serve it.)
            if allowed and scope["method"] not in allowed:
                response = problem_response(
                    405,
                    "method_not_allowed",
                    "Method not allowed",
                    f"{scope['method']} is not served here; use {', '.join(allowed)}.",
                )
                response.headers["Allow"] = ", ".join(allowed)
                await response(scope, receive, send)
            else:  # the router answers 404
                await self.app(scope, receive, send)
            return
        if not takes_json_body(route):
            await self.app(scope, receive, send)
            return
        await self._json_body(scope, receive, send, self._body_limit(route))

    def _body_limit(self, route: APIRoute) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        if route.body_field is not None:
            return MAX_MODEL_BODY_BYTES
        return get_settings().max_request_bytes

    async def _json_body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        body = b""
        refusal: DomainError | None = None
        if not is_json_media_type(headers.get(b"content-type", b"").decode("latin-1")):
            refusal = UnsupportedMediaType()
        elif _declared_length(headers) > limit:
            refusal = PayloadTooLarge(limit)
        else:
            body, refusal = await _read_json_body(receive, limit)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, _replaying(body, receive), send)

    def _route(self, scope: Scope) -> APIRoute | None:
        for route in self.routes:
            if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
                return route
        return None

    def _allowed(self, scope: Scope) -> list[str]:
        methods = {
            method
            for route in [*self.routes, *self.elsewhere]
            if isinstance(route, APIRoute) and route.matches(scope)[0] is not Match.NONE
            for method in route.methods or ()
        }
        return sorted(methods)


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length") or 0)
    except ValueError:
        return 0  # not a number: the body is read (and bounded) anyway


async def _read_json_body(receive: Receive, limit: int) -> tuple[bytes, DomainError | None]:
    """The whole body, read no further than `limit` bytes, and why it is refused if it is."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", PayloadTooLarge(limit)
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    if json_depth(body, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return body, NestingTooDeep(MAX_JSON_DEPTH)
    return body, None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the client's messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
