"""API keys: the owner's service (auth function) and the verifier every function that
authenticates callers uses (current_principal)."""

from __future__ import annotations

from creditml.auth.api_keys import ApiKeyService, ApiKeyVerifier
from creditml.composition import component
from creditml.composition.core import user_directory
from creditml.settings import get_settings
from creditml.storage.api_keys import ApiKeyRepository


@component
def api_key_repository() -> ApiKeyRepository:
    return ApiKeyRepository(get_settings().api_keys_table)


@component
def api_key_service() -> ApiKeyService:
    return ApiKeyService(api_key_repository())


@component
def api_key_verifier() -> ApiKeyVerifier:
    """The container's verifier, with its memory of recently verified keys."""
    return ApiKeyVerifier(api_key_repository(), user_directory())
