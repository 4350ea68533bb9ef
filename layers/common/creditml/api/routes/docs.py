"""Routes of the docs function: the OpenAPI document and Swagger UI.

Swagger UI's files ship with the layer (creditml/api/static/swagger-ui/, see its README):
`/docs` loads nothing from another origin and works offline, and its page can carry a
Content-Security-Policy that allows no inline script. They are served under names that
carry a hash of their content, so browsers may cache them for good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from creditml.api.app import API_TITLE
from creditml.api.catalog import openapi_document

router = APIRouter(include_in_schema=False)

SWAGGER_UI_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
OPENAPI_URL = "/openapi.json"
ASSETS_PATH = "/docs/assets/"
# The only files /docs/assets/ serves (by vendored name), with their media types.
MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-init.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Swagger UI sets style attributes from script, hence 'unsafe-inline' for styles only;
# its CSS embeds its icons as data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
# A served name changes whenever its content does.
_ASSET_CACHE = "public, max-age=31536000, immutable"
_HASH_CHARS = 12


@dataclass(frozen=True)
class Asset:
    """A vendored file as served."""

    name: str
    content: bytes
    media_type: str


@cache
def assets() -> dict[str, Asset]:
    """The files of /docs/assets/ by served name: `swagger-ui.css` is served as
    `swagger-ui.<first 12 hex digits of its SHA-256>.css`. Read once per container."""
    served = {}
    for name, media_type in MEDIA_TYPES.items():
        content = (SWAGGER_UI_DIR / name).read_bytes()
        stem, _, suffix = name.rpartition(".")
        digest = hashlib.sha256(content).hexdigest()[:_HASH_CHARS]
        served[f"{stem}.{digest}.{suffix}"] = Asset(name, content, media_type)
    return served


def asset_url(name: str) -> str:
    """The URL of vendored file `name` (a key of MEDIA_TYPES)."""
    (served,) = (served for served, asset in assets().items() if asset.name == name)
    return ASSETS_PATH + served


@cache
def swagger_ui_page() -> str:
    """The /docs page: Swagger UI's files and its starter script, all from /docs/assets/."""

    def url(name: str) -> str:
        return escape(asset_url(name))

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(API_TITLE)} API</title>
<link rel="icon" type="image/png" href="{url("favicon-32x32.png")}">
<link rel="stylesheet" href="{url("swagger-ui.css")}">
<script src="{url("swagger-ui-bundle.js")}" defer></script>
<script src="{url("swagger-init.js")}" defer></script>
</head>
<body>
<div id="swagger-ui" data-openapi-url="{OPENAPI_URL}"></div>
</body>
</html>
"""


@router.get(OPENAPI_URL)
def openapi() -> JSONResponse:
    document: dict[str, Any] = openapi_document()
    return JSONResponse(document)


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(
        swagger_ui_page(),
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            # The page names the current assets: always ask whether it changed.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise HTTPException(404)
    return Response(
        asset.content,
        media_type=asset.media_type,
        headers={"Cache-Control": _ASSET_CACHE, "X-Content-Type-Options": "nosniff"},
    )
