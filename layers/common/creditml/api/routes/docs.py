"""Routes of the docs function: the OpenAPI document and Swagger UI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from creditml.api.app import API_TITLE
from creditml.api.catalog import openapi_document

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi() -> JSONResponse:
    document: dict[str, Any] = openapi_document()
    return JSONResponse(document)


@router.get("/docs")
def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{API_TITLE} API")
