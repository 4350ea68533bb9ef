"""The whole API in one place: every router of every HTTP function, for the single OpenAPI
document served at /openapi.json (the contract test checks it matches template.yaml)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi

import creditml
from creditml.api.app import API_DESCRIPTION, API_TITLE
from creditml.api.routes import auth, billing, models, predictions


def all_routers() -> list[APIRouter]:
    """The routers of every HTTP function that serves the public API."""
    return [auth.router, billing.router, models.router, predictions.router]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the whole API (built once per container)."""
    routes = [route for router in all_routers() for route in router.routes]
    return get_openapi(
        title=API_TITLE,
        version=creditml.__version__,
        description=API_DESCRIPTION,
        routes=routes,
    )
