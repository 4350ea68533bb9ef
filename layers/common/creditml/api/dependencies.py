"""Wiring: services built lazily from settings, cached per container, and the FastAPI
dependencies that hand them to routes.
"""

from __future__ import annotations

import re
import sys
from functools import cache, lru_cache
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditml.auth.roles import Role, role_satisfies
from creditml.auth.service import AuthService
from creditml.auth.tokens import AccessClaims, TokenSigner
from creditml.billing.ledger import Ledger
from creditml.billing.payments import StubPaymentGateway
from creditml.billing.service import BillingService
from creditml.errors import (
    Forbidden,
    IdempotencyKeyRequired,
    InvalidIdempotencyKey,
    NotAuthenticated,
)
from creditml.models.service import ModelService
from creditml.settings import get_settings, reset_settings
from creditml.storage.ledger import LedgerRepository
from creditml.storage.model_parts import Uploads
from creditml.storage.models import ModelRepository
from creditml.storage.secrets import SigningKeyStore
from creditml.storage.sessions import SessionRepository
from creditml.storage.users import UserRepository


@cache
def signing_keys() -> SigningKeyStore:
    settings = get_settings()
    return SigningKeyStore(settings.jwt_secret_id, settings.jwt_secret_max_age_seconds)


@lru_cache(maxsize=2)
def _signer_for(key: bytes) -> TokenSigner:
    settings = get_settings()
    return TokenSigner(
        key,
        issuer=settings.jwt_issuer,
        access_ttl=settings.access_token_ttl_seconds,
        refresh_ttl=settings.refresh_token_ttl_seconds,
    )


def token_signer() -> TokenSigner:
    """The signer for the current key (a rotated secret yields a new signer)."""
    return _signer_for(signing_keys().current())


@cache
def ledger_store() -> LedgerRepository:
    settings = get_settings()
    return LedgerRepository(settings.ledger_table, settings.users_table)


@cache
def ledger() -> Ledger:
    return Ledger(ledger_store())


@cache
def billing_service() -> BillingService:
    return BillingService(
        ledger=ledger(),
        reader=ledger_store(),
        payments=StubPaymentGateway(),
        max_top_up=get_settings().max_top_up_credits,
    )


@cache
def model_service() -> ModelService:
    settings = get_settings()
    return ModelService(
        models=ModelRepository(settings.models_table),
        uploads=Uploads(settings.uploads_bucket),
        max_bytes=settings.max_model_bytes,
        url_ttl=settings.upload_url_ttl_seconds,
    )


@cache
def auth_service() -> AuthService:
    settings = get_settings()
    return AuthService(
        users=UserRepository(settings.users_table),
        sessions=SessionRepository(settings.sessions_table),
        signer=token_signer,
        balances=ledger_store(),
    )


def reset_dependencies() -> None:
    """Forget every cached service and the settings (for tests and the local stack)."""
    wiring = sys.modules.get("creditml.models.wiring")  # only where the ML layer is loaded
    if wiring is not None:
        wiring.reset_model_wiring()
    for factory in (
        signing_keys,
        _signer_for,
        ledger_store,
        ledger,
        billing_service,
        model_service,
        auth_service,
    ):
        factory.cache_clear()
    reset_settings()


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


async def _auth_service() -> AuthService:
    return auth_service()


async def _billing_service() -> BillingService:
    return billing_service()


async def _model_service() -> ModelService:
    return model_service()


Principal = Annotated[AccessClaims, Depends(current_principal)]
AuthServiceDep = Annotated[AuthService, Depends(_auth_service)]
ModelServiceDep = Annotated[ModelService, Depends(_model_service)]


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
BillingServiceDep = Annotated[BillingService, Depends(_billing_service)]
