"""template.yaml and the code agree: every HttpApi route is served by the function the
template names, every route a function serves is in the template, and the one OpenAPI
document describes exactly the template's public routes, each with the error answers it
can get as problem details. Requests no route claims get the same answers from the deployed
catch-all and from the local gateway."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from creditml.api.app import served_routes, takes_json_body
from creditml.api.catalog import all_routers, openapi_document
from creditml.api.dependencies import idempotency_key
from creditml.devstack import runtime
from creditml.devstack.gateway import Gateway, to_http_response
from creditml.devstack.template import Template
from tests.conftest import load_event
from tests.integration.conftest import serving

# Routes that exist for the platform rather than the public API.
DOCS_ROUTES = {"GET /openapi.json", "GET /docs", "GET /docs/assets/{name}"}
CATCH_ALL = "ANY /{proxy+}"
# The browser UI (WebFunction): pages, not API operations, so not in the OpenAPI document.
WEB_ROUTES = {"GET /", "ANY /ui", "ANY /ui/{proxy+}"}


def _served(template: Template, function: str) -> set[str]:
    return served_routes(runtime.load_module(template.functions[function]).app)


def _declared(template: Template, function: str) -> set[str]:
    return {route.key for route in template.functions[function].routes}


def test_template_declares_http_functions(template: Template) -> None:
    assert set(HTTP_FUNCTIONS) <= set(template.functions)


HTTP_FUNCTIONS = [
    "AuthFunction",
    "BillingFunction",
    "DocsFunction",
    "ModelsFunction",
    "PredictFunction",
    "ReportsFunction",
]


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
def test_each_function_serves_exactly_its_template_routes(
    template: Template, function: str
) -> None:
    declared = _declared(template, function) - {CATCH_ALL}
    assert _served(template, function) == declared


def test_every_http_function_is_checked(template: Template) -> None:
    with_routes = {name for name, spec in template.functions.items() if spec.routes}
    assert with_routes == {*HTTP_FUNCTIONS, "WebFunction"}, (
        "a new HTTP function needs its entry in the parametrized contract test above"
    )


def test_openapi_documents_every_public_route(template: Template) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    public = {route.key for route in template.routes} - DOCS_ROUTES - WEB_ROUTES - {CATCH_ALL}
    assert documented == public


def test_the_web_function_serves_only_its_own_paths(template: Template) -> None:
    """The pages live under / and /ui/..., beside the API's paths and never on them."""
    assert _declared(template, "WebFunction") == WEB_ROUTES
    from creditml.web.app import ROUTERS

    paths = {route.path for router in ROUTERS for route in router.routes} | {"/ui/static/{name}"}
    assert "/" in paths
    assert all(path == "/" or path == "/ui" or path.startswith("/ui/") for path in paths)
    documented = set(openapi_document()["paths"])
    assert not any(path == "/" or path.startswith("/ui") for path in documented)


def test_unclaimed_paths_reach_the_catch_all(template: Template) -> None:
    found = template.route_for("GET", "/no/such/thing")
    assert found is not None
    assert found[0].function == "DocsFunction"
    found = template.route_for("GET", "/users/me")
    assert found is not None
    assert found[0].key == "GET /users/me"
    found = template.route_for("PATCH", "/users/me")
    assert found is not None
    assert found[0].key == "PATCH /users/{id}"


# --- The one OpenAPI document: errors, media types, headers ---------------------------

PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
}
EVERY_OPERATION = {"422", "429", "500", "503"}
JSON_BODY = {"400", "413", "415", "422"}


def _operations() -> list[tuple[str, str, APIRoute, dict[str, Any]]]:
    document = openapi_document()
    return [
        (method, route.path_format, route, document["paths"][route.path_format][method.lower()])
        for router in all_routers()
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    ]


def _requires_idempotency_key(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is idempotency_key:
            return True
        stack.extend(dependency.dependencies)
    return False


@pytest.mark.parametrize(
    ("method", "path", "route", "operation"),
    _operations(),
    ids=[f"{method} {path}" for method, path, _, _ in _operations()],
)
def test_every_operation_documents_its_errors_as_problem_details(
    method: str, path: str, route: APIRoute, operation: dict[str, Any]
) -> None:
    responses: dict[str, Any] = operation["responses"]
    expected = set(EVERY_OPERATION)
    if operation.get("security"):
        expected |= {"401", "404"}
    if "{" in path:
        expected.add("404")
    if takes_json_body(route):
        expected |= JSON_BODY
        assert list(operation["requestBody"]["content"]) == ["application/json"]
    if path == "/models/{id}/predictions":
        expected |= {"400", "402", "409"}
    assert expected <= set(responses), f"{method} {path} lacks {expected - set(responses)}"
    for status, response in responses.items():
        assert response.get("description"), (status, response)
        if int(status) >= 400:
            assert response["content"] == PROBLEM_CONTENT, (method, path, status)
    for status in ("429", "503"):
        assert responses[status]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
    if _requires_idempotency_key(route):
        assert [key["required"] for key in keys] == [True]
        assert keys[0]["in"] == "header"
        assert {"400", "409"} <= set(responses)
    else:
        assert keys == []


def test_problem_details_schema_is_the_only_error_schema() -> None:
    document = openapi_document()
    schema = document["components"]["schemas"]["ProblemDetails"]
    assert set(schema["required"]) == {"type", "title", "status", "detail", "code"}
    assert schema.get("additionalProperties", True) is not False  # balance, required, ...
    assert "Problem" not in document["components"]["schemas"]
    assert '"#/components/schemas/Problem"' not in json.dumps(document)


def test_every_moving_money_route_requires_an_idempotency_key() -> None:
    required = {
        f"{method} {path}"
        for method, path, route, _ in _operations()
        if _requires_idempotency_key(route)
    }
    assert {"POST /billing/top-ups", "POST /models/{id}/predictions"} <= required


# --- Unclaimed methods and paths, deployed (the docs catch-all) and local (gateway) ---


def _docs_event(method: str, path: str) -> dict[str, Any]:
    event = load_event("docs_openapi")
    event["routeKey"] = event["requestContext"]["routeKey"] = "ANY /{proxy+}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    return event


UNCLAIMED = [
    ("TRACE", "/models/abc/predictions", "POST"),
    ("PUT", "/models/abc/predictions", "POST"),
    ("PUT", "/billing/balance", "GET"),
    ("TRACE", "/models/abc", "DELETE, GET, PATCH"),
    ("DELETE", "/users/me", "GET, PATCH"),
    ("POST", "/openapi.json", "GET"),
]


@pytest.mark.parametrize(("method", "path", "allow"), UNCLAIMED)
@pytest.mark.usefixtures("aws")
def test_the_catch_all_answers_405_with_allow(
    template: Template, method: str, path: str, allow: str
) -> None:
    found = template.route_for(method, path)
    assert found is not None
    assert found[0].key == CATCH_ALL  # API Gateway sends it to the docs function
    response = runtime.invoke(template.functions["DocsFunction"], _docs_event(method, path))
    status, headers, body = to_http_response(response)
    assert (status, headers["allow"]) == (405, allow)
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["GET", "TRACE", "POST"])
@pytest.mark.usefixtures("aws")
def test_the_catch_all_answers_404_for_unknown_paths(template: Template, method: str) -> None:
    response = runtime.invoke(
        template.functions["DocsFunction"], _docs_event(method, "/no/such/thing")
    )
    status, headers, body = to_http_response(response)
    assert (status, json.loads(body)["code"]) == (404, "not_found")
    assert "allow" not in headers


@pytest.mark.usefixtures("aws")
def test_the_docs_function_serves_the_documented_document(template: Template) -> None:
    response = runtime.invoke(template.functions["DocsFunction"], load_event("docs_openapi"))
    status, _, body = to_http_response(response)
    assert status == 200
    assert json.loads(body) == json.loads(json.dumps(openapi_document()))


@pytest.fixture
def gateway(aws: dict[str, str], template: Template) -> Iterator[Gateway]:
    with serving(template) as server:
        yield server


@pytest.mark.parametrize(("method", "path", "allow"), UNCLAIMED[:4])
def test_the_local_gateway_answers_unclaimed_methods_as_deployed(
    gateway: Gateway, method: str, path: str, allow: str
) -> None:
    host, port = gateway.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert (response.status, response.getheader("Allow")) == (405, allow)
    assert response.getheader("Content-Type") == "application/problem+json"
    assert json.loads(body)["code"] == "method_not_allowed"
