"""The auth function's services."""

from __future__ import annotations

from creditml.auth.service import AuthService
from creditml.composition import component
from creditml.composition.core import (
    ledger_repository,
    session_repository,
    token_signer,
    user_directory,
)
from creditml.composition.limits import login_throttle
from creditml.settings import get_settings
from creditml.storage.users import LoginLookup, UserRepository


def user_repository() -> UserRepository:
    return user_directory()


@component
def login_lookup() -> LoginLookup:
    settings = get_settings()
    return LoginLookup(settings.users_table, settings.limits_table)


@component
def auth_service() -> AuthService:
    return AuthService(
        users=user_repository(),
        sessions=session_repository(),
        signer=token_signer,
        balances=ledger_repository(),
        logins=login_lookup(),
        throttle=login_throttle(),
    )
