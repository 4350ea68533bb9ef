"""The FastAPI dependencies that hand routes their caller, Idempotency-Key and services.

Services come from the composition roots (creditml.composition); a test replaces one with
`app.dependency_overrides[get_billing_service] = ...`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditml.api.limits import request_limited
from creditml.auth.api_keys import is_api_key
from creditml.auth.revocations import RevocationList
from creditml.auth.roles import Role, role_satisfies
from creditml.auth.service import AuthService
from creditml.auth.tokens import AccessClaims
from creditml.billing.service import BillingService
from creditml.composition.api_keys import api_key_verifier
from creditml.composition.auth import auth_service
from creditml.composition.billing import billing_service
from creditml.composition.core import revocation_list, token_signer, user_directory
from creditml.composition.models import model_service
from creditml.composition.reports import daily_reports, reports_service
from creditml.errors import (
    ApiKeyNotAllowed,
    Forbidden,
    IdempotencyKeyRequired,
    InvalidIdempotencyKey,
    InvalidToken,
    NotAuthenticated,
    UserNotFound,
)
from creditml.models.service import ModelService
from creditml.reports.service import DailyReports, ReportsService
from creditml.storage.users import UserRepository

_bearer = HTTPBearer(
    auto_error=False,
    description="Access token from POST /auth/login, or an API key (cml_...) from POST /api-keys",
)


async def get_revocations() -> RevocationList:
    return revocation_list()


# Dependencies are `async def` although they await nothing: FastAPI runs plain `def`
# dependencies in a thread pool, a thread hop per dependency per request.
async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    revocations: Annotated[RevocationList, Depends(get_revocations)],
) -> AccessClaims:
    """The caller, from a valid access token of a session not revoked, or from a live API
    key of a user who exists (ApiKeyClaims); 401 otherwise.

    The revocation check is a set lookup; at most once per interval it runs one Query
    (blocking, briefly: a Lambda container serves one request at a time). An API key
    remembered by the container costs a dict lookup; otherwise two GetItems (same note)."""
    if credentials is None:
        raise NotAuthenticated()
    if is_api_key(credentials.credentials):
        return api_key_verifier().verify(credentials.credentials)
    claims = token_signer().verify_access(credentials.credentials)
    if revocations.is_revoked(claims.family_id):
        raise InvalidToken()
    return claims


async def session_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    revocations: Annotated[RevocationList, Depends(get_revocations)],
) -> AccessClaims:
    """current_principal for access tokens only: an API key gets 403 api_key_not_allowed
    (a key must not mint or revoke keys), from its prefix alone, without a lookup."""
    if credentials is not None and is_api_key(credentials.credentials):
        raise ApiKeyNotAllowed()
    return await current_principal(credentials, revocations)


async def get_auth_service() -> AuthService:
    return auth_service()


async def get_billing_service() -> BillingService:
    return billing_service()


async def get_model_service() -> ModelService:
    return model_service()


async def get_reports_service() -> ReportsService:
    return reports_service()


async def get_daily_reports() -> DailyReports:
    return daily_reports()


async def get_user_directory() -> UserRepository:
    return user_directory()


# Every authenticated route counts its request against RATE_LIMIT_PER_MINUTE (one
# UpdateItem), except predictions, whose debit counts them at no extra call.
Principal = Annotated[AccessClaims, Depends(request_limited(current_principal))]
UnmeteredPrincipal = Annotated[AccessClaims, Depends(current_principal)]
# The caller of an access token, never an API key (the /api-keys routes).
SessionPrincipal = Annotated[AccessClaims, Depends(request_limited(session_principal))]
UserDirectoryDep = Annotated[UserRepository, Depends(get_user_directory)]


# A plain `def`: it does I/O (one GetItem), so FastAPI runs it in the thread pool instead of
# blocking the event loop.
def verified_principal(principal: Principal, users: UserDirectoryDep) -> AccessClaims:
    """The caller with the role stored on their user item now, not the token's (one
    consistent GetItem): a demoted publisher loses publisher rights at once. 401 when the
    user no longer exists."""
    try:
        role = users.stored_role(principal.user_id)
    except UserNotFound as exc:
        raise InvalidToken() from exc
    return dataclasses.replace(principal, role=role)


VerifiedPrincipal = Annotated[AccessClaims, Depends(verified_principal)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
BillingServiceDep = Annotated[BillingService, Depends(get_billing_service)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
ReportsServiceDep = Annotated[ReportsService, Depends(get_reports_service)]
DailyReportsDep = Annotated[DailyReports, Depends(get_daily_reports)]


def require_role(required: Role) -> object:
    """A dependency that admits callers whose stored role satisfies `required`; 403
    otherwise."""

    async def check(principal: VerifiedPrincipal) -> AccessClaims:
        if not role_satisfies(principal.role, required):
            raise Forbidden()
        return principal

    return Depends(check)


# Checked against the stored role (VerifiedPrincipal), never the token's alone.
AdminPrincipal = Annotated[AccessClaims, require_role(Role.ADMIN)]


# The web UI's money forms carry their key under the same rule (creditml.web).
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required on every request that moves credits: a unique value per "
            "intended operation (e.g. a UUID). Retrying with the same key and body "
            "replays the first result; the same key with another body is refused.",
        ),
    ] = None,
) -> str:
    """The request's Idempotency-Key: 400 when missing, 422 when malformed."""
    if key is None or not key.strip():
        raise IdempotencyKeyRequired()
    if not IDEMPOTENCY_KEY.match(key):
        raise InvalidIdempotencyKey()
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]
