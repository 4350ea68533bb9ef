"""Routes of the auth function: /auth/*, /users and /users/*."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from creditml.api.dependencies import AdminPrincipal, AuthServiceDep, Principal, UserDirectoryDep
from creditml.api.limits import SourceIp
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.auth.schemas import (
    LoginRequest,
    Profile,
    RefreshRequest,
    RegisterRequest,
    RoleUpdate,
    TokenPair,
    UserPage,
    UserPublic,
)
from creditml.storage.users import USER_CURSOR_MAX_LENGTH, USER_PAGE_MAX
from creditml.users import User

router = APIRouter(responses=PROBLEM_RESPONSES)
UserId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    tags=["auth"],
    responses={409: problem_doc("Email already registered (any letter case)")},
)
def register(body: RegisterRequest, service: AuthServiceDep) -> UserPublic:
    """Create an account with the `user` role."""
    user = service.register(body.email, body.password)
    return UserPublic(id=user.id, email=user.email, role=user.role)


@router.post(
    "/auth/login",
    response_model=TokenPair,
    tags=["auth"],
    responses={429: problem_doc("Too many failed log-ins for this email or source address")},
)
def login(body: LoginRequest, service: AuthServiceDep, address: SourceIp) -> TokenPair:
    """Exchange email and password for an access token (15 min) and a refresh token.

    Throttled (429 `rate_limited`, whatever the password) after repeated failures for the
    email or the source address."""
    return service.login(body.email, body.password, address)


@router.post("/auth/refresh", response_model=TokenPair, tags=["auth"])
def refresh(body: RefreshRequest, service: AuthServiceDep) -> TokenPair:
    """Rotate a refresh token into a new pair. Presenting a spent refresh token again revokes
    the whole session (401 `refresh_token_reused`)."""
    return service.refresh(body.refresh_token)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["auth"],
    responses={401: problem_doc("Invalid or expired refresh token, or a session already ended")},
)
def logout(body: RefreshRequest, service: AuthServiceDep) -> Response:
    """End the session of a refresh token: its family is revoked, so none of its refresh
    tokens rotate again and its access tokens stop working on every route within 60 s."""
    service.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/me", response_model=Profile, tags=["users"])
def me(principal: Principal, service: AuthServiceDep) -> Profile:
    """The caller's profile and credit balance."""
    user, balance = service.profile(principal.user_id)
    return Profile(id=user.id, email=user.email, role=user.role, balance=balance)


@router.get(
    "/users",
    response_model=UserPage,
    tags=["users"],
    responses={
        403: problem_doc("Caller is not an admin"),
        422: problem_doc("Malformed query, or a cursor this route did not make"),
    },
)
def list_users(
    admin: AdminPrincipal,
    users: UserDirectoryDep,
    limit: Annotated[int, Query(ge=1, le=USER_PAGE_MAX)] = 20,
    cursor: Annotated[str | None, Query(max_length=USER_CURSOR_MAX_LENGTH)] = None,
    email: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=254,
            description="Just the user registered with this email (any letter case); "
            "`limit` and `cursor` then do not apply",
        ),
    ] = None,
) -> UserPage:
    """Every user with their role, a page at a time: admin only (the caller's stored role
    is checked, not the token's). Users come in no particular order (the table's), stable
    across pages: follow `next_cursor` until it is null to see each user once. A page may
    hold fewer than `limit` users and still have a `next_cursor`."""
    if email is not None:
        found = users.find_by_email(email)
        return UserPage(items=[] if found is None else [_public(found)], next_cursor=None)
    page, next_cursor = users.page(limit, cursor)
    return UserPage(items=[_public(user) for user in page], next_cursor=next_cursor)


def _public(user: User) -> UserPublic:
    return UserPublic(id=user.id, email=user.email, role=user.role)


@router.patch(
    "/users/{id}",
    response_model=UserPublic,
    tags=["users"],
    responses={
        403: problem_doc("Caller is not an admin"),
        404: problem_doc("No such user"),
        409: problem_doc("Admins cannot change their own role"),
    },
)
def set_role(
    id: UserId, body: RoleUpdate, admin: AdminPrincipal, service: AuthServiceDep
) -> UserPublic:
    """Set a user's role (`user`, `publisher`, `admin`). Admin only (the caller's stored
    role is checked, not the token's). Every session the user has at that moment is
    revoked: their tokens stop working within 60 s, and they log in again to get the new
    role."""
    user = service.set_role(admin, id, body.role)
    return UserPublic(id=user.id, email=user.email, role=user.role)
