"""Pieces every function kind shares: the JWT signer, the revocation list, the stored roles
and the ledger."""

from __future__ import annotations

from functools import lru_cache

from creditml.auth.revocations import CLOCK_SKEW_SECONDS, RevocationList
from creditml.auth.tokens import TokenSigner
from creditml.billing.ledger import Ledger
from creditml.composition import component, remember
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from creditml.storage.secrets import SigningKeyStore
from creditml.storage.sessions import SessionRepository
from creditml.storage.users import UserRepository


@component
def signing_keys() -> SigningKeyStore:
    settings = get_settings()
    return SigningKeyStore(settings.jwt_secret_id, settings.jwt_secret_max_age_seconds)


@remember
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


@component
def user_directory() -> UserRepository:
    """Users, read by every function that checks the role stored now (VerifiedPrincipal)."""
    return UserRepository(get_settings().users_table)


def _revocation_retention() -> int:
    return get_settings().access_token_ttl_seconds + CLOCK_SKEW_SECONDS


@component
def session_repository() -> SessionRepository:
    return SessionRepository(get_settings().sessions_table, _revocation_retention())


@component
def revocation_list() -> RevocationList:
    """The container's list of recently revoked session families (see current_principal)."""
    return RevocationList(session_repository(), _revocation_retention())


@component
def ledger_repository() -> LedgerRepository:
    settings = get_settings()
    return LedgerRepository(settings.ledger_table, settings.users_table, settings.models_table)


@component
def ledger() -> Ledger:
    return Ledger(ledger_repository(), debits_per_minute=get_settings().rate_limit_per_minute)
