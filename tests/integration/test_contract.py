"""template.yaml and the code agree: every HttpApi route is served by the function the
template names, every route a function serves is in the template, and the one OpenAPI
document describes exactly the template's public routes."""

from __future__ import annotations

import pytest

from creditml.api.app import served_routes
from creditml.api.catalog import openapi_document
from creditml.devstack import runtime
from creditml.devstack.template import Template

# Routes that exist for the platform rather than the public API.
DOCS_ROUTES = {"GET /openapi.json", "GET /docs"}
CATCH_ALL = "ANY /{proxy+}"


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
]


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
def test_each_function_serves_exactly_its_template_routes(
    template: Template, function: str
) -> None:
    declared = _declared(template, function) - {CATCH_ALL}
    assert _served(template, function) == declared


def test_every_http_function_is_checked(template: Template) -> None:
    with_routes = {name for name, spec in template.functions.items() if spec.routes}
    assert with_routes == set(HTTP_FUNCTIONS), (
        "a new HTTP function needs its entry in the parametrized contract test above"
    )


def test_openapi_documents_every_public_route(template: Template) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    public = {route.key for route in template.routes} - DOCS_ROUTES - {CATCH_ALL}
    assert documented == public


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
