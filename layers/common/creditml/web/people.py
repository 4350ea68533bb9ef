"""Who is asking: the person behind a request's session cookie, checked on every request."""

from __future__ import annotations

from starlette.requests import Request

from creditml.composition.core import revocation_list, token_signer, user_directory
from creditml.errors import DomainError
from creditml.web.session import SESSION_COOKIE, LoginRequired, WebUser


def current_user(request: Request) -> WebUser | None:
    """The logged-in person, or None: no cookie, a forged or expired one, a session ended
    (logged out, or revoked by a role change), or a user that no longer exists. The role
    is the one stored now (one GetItem), never the one the session began with."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = token_signer().verify_refresh(token)
        if revocation_list().is_revoked(claims.family_id):
            return None
        user = user_directory().get(claims.user_id)
    except DomainError:
        return None
    return WebUser(user.id, user.email, user.role, claims.family_id, token)


def required_user(request: Request) -> WebUser:
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    return user
