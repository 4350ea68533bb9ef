"""The auth function's services."""

from __future__ import annotations

from creditml.auth.service import AuthService
from creditml.composition import component
from creditml.composition.core import ledger_repository, token_signer
from creditml.settings import get_settings
from creditml.storage.sessions import SessionRepository
from creditml.storage.users import UserRepository


@component
def user_repository() -> UserRepository:
    return UserRepository(get_settings().users_table)


@component
def auth_service() -> AuthService:
    return AuthService(
        users=user_repository(),
        sessions=SessionRepository(get_settings().sessions_table),
        signer=token_signer,
        balances=ledger_repository(),
    )
