"""The FastAPI dependencies that hand routes their caller, Idempotency-Key and services.

Services come from the composition roots (creditml.composition); a test replaces one with
`app.dependency_overrides[get_billing_service] = ...`.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditml.auth.roles import Role, role_satisfies
from creditml.auth.service import AuthService
from creditml.auth.tokens import AccessClaims
from creditml.billing.service import BillingService
from creditml.composition.auth import auth_service
from creditml.composition.billing import billing_service
from creditml.composition.core import token_signer
from creditml.composition.models import model_service
from creditml.errors import (
    Forbidden,
    IdempotencyKeyRequired,
    InvalidIdempotencyKey,
    NotAuthenticated,
)
from creditml.models.service import ModelService

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /auth/login")


# Dependencies are `async def` although they await nothing: FastAPI runs plain `def`
# dependencies in a thread pool, a thread hop per dependency per request.
async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    """The caller, from a valid access token; 401 otherwise."""
    if credentials is None:
        raise NotAuthenticated()
    return token_signer().verify_access(credentials.credentials)


async def get_auth_service() -> AuthService:
    return auth_service()


async def get_billing_service() -> BillingService:
    return billing_service()


async def get_model_service() -> ModelService:
    return model_service()


Principal = Annotated[AccessClaims, Depends(current_principal)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
BillingServiceDep = Annotated[BillingService, Depends(get_billing_service)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]


def require_role(required: Role) -> object:
    """A dependency that admits callers whose role satisfies `required`; 403 otherwise."""

    async def check(principal: Principal) -> AccessClaims:
        if not role_satisfies(principal.role, required):
            raise Forbidden()
        return principal

    return Depends(check)


AdminPrincipal = Annotated[AccessClaims, require_role(Role.ADMIN)]


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


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
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidIdempotencyKey()
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]
