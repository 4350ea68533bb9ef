"""Pieces every function kind shares: the JWT signer and the ledger."""

from __future__ import annotations

from functools import lru_cache

from creditml.auth.tokens import TokenSigner
from creditml.billing.ledger import Ledger
from creditml.composition import component, remember
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from creditml.storage.secrets import SigningKeyStore


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
def ledger_repository() -> LedgerRepository:
    settings = get_settings()
    return LedgerRepository(settings.ledger_table, settings.users_table, settings.models_table)


@component
def ledger() -> Ledger:
    return Ledger(ledger_repository())
