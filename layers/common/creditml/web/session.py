"""Browser sessions: an HttpOnly, SameSite=Strict cookie, and a CSRF token on every form.

The session cookie holds the session's refresh token, exactly as POST /auth/login issued it.
The web function never rotates it: it is the handle of a server-side session (its family in
the sessions table). Each request verifies its signature and expiry and that its family is
not revoked, so logging out (which revokes the family) ends the session server-side, and a
role change (which revokes every family of the user) logs the person out everywhere. Nothing
a script can read ever holds a token: both cookies are HttpOnly.

CSRF: a random token in an HttpOnly cookie (`creditml_csrf`, the only cookie set before log-in)
is repeated in a hidden field of every form; a state-changing request whose field does not
match the cookie, or whose Origin names another site, is refused before anything happens.
SameSite=Strict already keeps other sites' requests cookieless; the token is the second lock.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.errors import DomainError

SESSION_COOKIE = "creditml_session"
CSRF_COOKIE = "creditml_csrf"
CSRF_FIELD = "csrf_token"
CSRF_BYTES = 32


class CsrfRefused(DomainError):
    status = 403
    code = "csrf_failed"
    title = "This form has expired or came from another site"

    def __init__(self) -> None:
        super().__init__("Reload the page and submit the form again.")


class LoginRequired(DomainError):
    status = 401
    code = "not_authenticated"
    title = "Please log in"


@dataclass(frozen=True)
class WebUser:
    """The person logged in: who, with the role stored now, in which session."""

    user_id: str
    email: str
    role: Role
    family_id: str
    session_token: str

    @property
    def claims(self) -> AccessClaims:
        """The person as the services know a caller (the stored role, this session)."""
        return AccessClaims(self.user_id, self.role, expires_at=0, family_id=self.family_id)

    @property
    def is_publisher(self) -> bool:
        return self.role in (Role.PUBLISHER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS, as API Gateway says in X-Forwarded-Proto
    (which it sets whatever the client sent). Without the header, HTTPS: cookies stay
    Secure unless the request is known to be plain HTTP (the local stack says so)."""
    forwarded = request.headers.get("x-forwarded-proto", "https")
    return forwarded.split(",")[0].strip().lower() != "http"


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one (set by `remember_csrf`)."""
    known = request.cookies.get(CSRF_COOKIE, "")
    if len(known) >= CSRF_BYTES:
        return known
    fresh: str = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(CSRF_BYTES))
    return fresh


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this request made a new token."""
    fresh = request.state.__dict__.get("new_csrf")
    if fresh is not None:
        _set_cookie(request, response, CSRF_COOKIE, fresh, max_age=None)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a state-changing request whose token does not match its cookie, or that a
    page of another origin sent. Runs before the request changes anything."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise CsrfRefused()
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        raise CsrfRefused()


def own_origin(request: Request) -> str:
    scheme = "https" if is_https(request) else "http"
    return f"{scheme}://{request.headers.get('host', '')}"


def start_session(
    request: Request, response: Response, refresh_token: str, expires_at: int
) -> None:
    _set_cookie(
        request, response, SESSION_COOKIE, refresh_token, max(0, expires_at - int(time.time()))
    )


def end_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request)
    )
