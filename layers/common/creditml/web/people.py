"""Who is asking: the person behind a request's session cookie, checked on every request."""

from __future__ import annotations

from starlette.requests import Request

from creditml.composition.core import session_repository, token_signer, user_directory
from creditml.composition.limits import request_limit
from creditml.errors import DomainError
from creditml.limits import request_subject
from creditml.web.session import SESSION_COOKIE, LoginRequired, WebUser


def current_user(request: Request) -> WebUser | None:
    """The logged-in person, or None: no cookie, a forged or expired one, a session ended
    (logged out, revoked by a role change or a detected reuse) or a spent token, or a user
    that no longer exists. Two reads, both consistent: the session's family and token (one
    BatchGetItem: authoritative, so a logout takes effect at once everywhere) and the user
    with the role stored now."""
    # Read once per request (an error page asks again): kept as a 1-tuple, so a request
    # found logged out is remembered too.
    known: tuple[WebUser | None] | None = getattr(request.state, "web_user", None)
    if known is None:
        known = request.state.web_user = (_session_user(request),)
    return known[0]


def _session_user(request: Request) -> WebUser | None:
    """The reads behind current_user."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = token_signer().verify_refresh(token)
        if not session_repository().is_live(claims):
            return None
        user = user_directory().get(claims.user_id)
    except DomainError:
        return None
    return WebUser(user.id, user.email, user.role, claims.family_id, token)


def required_user(request: Request) -> WebUser:
    """The logged-in person (LoginRequired otherwise), counted against their per-minute
    request limit like every authenticated API request (RateLimited above it)."""
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    request_limit().admit(request_subject(user.user_id))
    return user
