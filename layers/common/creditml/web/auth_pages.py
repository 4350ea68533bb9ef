"""Home, register, log in, log out."""

from __future__ import annotations

from contextlib import suppress

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from creditml.api.limits import source_ip
from creditml.auth.schemas import LoginRequest, RegisterRequest
from creditml.composition.auth import auth_service
from creditml.composition.core import token_signer
from creditml.errors import DomainError, InvalidCredentials
from creditml.web.forms import read_form
from creditml.web.people import current_user
from creditml.web.render import page, secure
from creditml.web.session import end_session, start_session
from creditml.web.validation import validated

router = APIRouter()
LOGIN_FAILED = "Invalid email or password"


def redirect(location: str) -> Response:
    """303 See Other: after a form, the browser GETs the next page (no re-post on reload)."""
    response = RedirectResponse(location, status_code=303)
    secure(response)
    return response


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never `//other.site`)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/models"


@router.get("/")
async def home(request: Request) -> Response:
    user = current_user(request)
    if user is not None:
        return redirect("/ui/models")
    return page(request, "home.html", None)


@router.get("/ui")
@router.get("/ui/")
async def ui_root() -> Response:
    return redirect("/")


@router.get("/ui/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    if current_user(request) is not None:
        return redirect(safe_next(next))
    return page(request, "login.html", None, {"next": safe_next(next), "email": ""})


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    target = safe_next(form.get("next"))
    try:
        body = validated(
            LoginRequest, {"email": form.text("email"), "password": form.get("password", "")}
        )
        pair = auth_service().login(body.email, body.password, source_ip(request))
    except InvalidCredentials:
        return _login_again(request, form.text("email"), target, LOGIN_FAILED, 401)
    except DomainError as exc:
        message = LOGIN_FAILED if exc.status == 422 else exc.detail
        return _login_again(request, form.text("email"), target, message, exc.status)
    return _session_started(request, pair.refresh_token, target)


def _session_started(request: Request, refresh_token: str, target: str) -> Response:
    """Redirect to `target` in the new session; a session the browser still had ends."""
    previous = current_user(request)
    if previous is not None:
        with suppress(DomainError):
            auth_service().logout(previous.session_token)
    response = redirect(target)
    claims = token_signer().verify_refresh(refresh_token)
    start_session(request, response, refresh_token, claims.expires_at)
    return response


def _login_again(request: Request, email: str, target: str, error: str, status: int) -> Response:
    context = {"next": target, "email": email, "error": error}
    return page(request, "login.html", None, context, status=status)


@router.get("/ui/register")
async def register_page(request: Request) -> Response:
    if current_user(request) is not None:
        return redirect("/ui/account")
    return page(request, "register.html", None, {"email": ""})


@router.post("/ui/register")
async def register(request: Request) -> Response:
    form = await read_form(request)
    email = form.text("email")
    try:
        body = validated(RegisterRequest, {"email": email, "password": form.get("password", "")})
        service = auth_service()
        user = service.register(body.email, body.password)
        pair = service.start_session(user)
    except DomainError as exc:
        context = {"email": email, "error": exc.detail}
        return page(request, "register.html", None, context, status=exc.status)
    return _session_started(request, pair.refresh_token, "/ui/account?welcome=1")


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    await read_form(request)  # its CSRF check
    user = current_user(request)
    if user is not None:
        with suppress(DomainError):  # already ended: the cookie goes all the same
            auth_service().logout(user.session_token)
    response = redirect("/")
    end_session(request, response)
    return response
