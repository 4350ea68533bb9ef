"""The web function's app: the pages, their static assets, and HTML error pages.

Every failure a person can meet is a page of this site with the status it deserves (a
forbidden page is a 403 page, a missing one a 404 page), never JSON and never a traceback.
"""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import creditml
from creditml.errors import DomainError
from creditml.observability import logger
from creditml.web import account_pages, admin_pages, auth_pages, model_pages
from creditml.web.people import current_user
from creditml.web.render import STATIC, page, secure
from creditml.web.session import LoginRequired

# Assets are named by the page that loads them with ?v=<version>, so a deploy changes their
# URLs and a day of caching is safe.
ASSET_MAX_AGE = 86_400
ROUTERS = (auth_pages.router, account_pages.router, model_pages.router, admin_pages.router)
ASSETS = {path.name: path for path in STATIC.iterdir() if path.is_file()}


def create_web_app() -> FastAPI:
    app = FastAPI(
        title="CreditML web",
        version=creditml.__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    for router in ROUTERS:
        app.include_router(router)
    app.add_api_route("/ui/static/{name}", asset, methods=["GET"])
    app.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    return app


async def asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media.startswith("text/") or media.endswith("javascript"):
        media += "; charset=utf-8"
    response = Response(path.read_bytes(), media_type=media)
    secure(response)
    response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}"
    return response


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    try:
        user = current_user(request)
    except Exception:  # noqa: BLE001 - an error page must render even when storage fails
        user = None
    context = {"status": status, "title": title, "detail": detail}
    return page(request, "error.html", user, context, status=status)


async def _login_required(request: Request, exc: LoginRequired) -> Response:
    target = request.url.path if request.method == "GET" else "/ui/models"
    return auth_pages.redirect(f"/ui/login?next={quote(target)}")


async def _domain_error(request: Request, exc: DomainError) -> Response:
    return error_page(request, exc.status, exc.title, exc.detail)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    return error_page(request, 422, "This address is not valid", "Check the link and try again.")


TITLES = {404: "Page not found", 405: "This page does not take that kind of request"}


async def _http_error(request: Request, exc: HTTPException) -> Response:
    title = TITLES.get(exc.status_code, "Request refused")
    return error_page(request, exc.status_code, title, "Check the address, or go back to Models.")


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger().exception("web page failed", extra={"path": request.url.path})
    detail = (
        "Something went wrong on our side. A prediction that was charged is in History; "
        "submitting the same form again never charges twice."
    )
    return error_page(request, 500, "Something went wrong", detail)
