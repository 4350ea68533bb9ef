"""The auth service: registration, login, token refresh, profiles and roles.

Takes its collaborators as arguments (repositories, a signer factory) so tests can pass fakes;
handlers call exactly one method and map the result.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from creditml.auth import passwords
from creditml.auth.roles import Role
from creditml.auth.schemas import TokenPair
from creditml.auth.sessions import RotationOutcome
from creditml.auth.tokens import AccessClaims, RefreshClaims, TokenSigner
from creditml.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    OwnRoleChange,
    RefreshTokenReused,
)
from creditml.users import User


class UserStore(Protocol):
    def create(self, user: User, password_hash: str) -> None: ...

    def get(self, user_id: str) -> User: ...

    def find_credentials(self, email: str) -> tuple[User, str] | None: ...

    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    def set_role(self, user_id: str, role: Role) -> User: ...


class SessionStore(Protocol):
    def start(self, first: RefreshClaims, family_expires_at: int) -> None: ...

    def rotate(self, old: RefreshClaims, new: RefreshClaims) -> RotationOutcome: ...

    def revoke(self, family_id: str) -> None: ...


class BalanceReader(Protocol):
    def balance(self, account_id: str) -> int: ...


class AuthService:
    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        signer: Callable[[], TokenSigner],
        balances: BalanceReader,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._signer = signer
        self._balances = balances

    def register(self, email: str, password: str, role: Role = Role.USER) -> User:
        """Create an account. EmailTaken when the email exists in any letter case."""
        user = User(id=str(uuid.uuid4()), email=email, role=role, created_at=datetime.now(UTC))
        self._users.create(user, passwords.hash_password(password))
        return user

    def login(self, email: str, password: str) -> TokenPair:
        """A fresh session for valid credentials. Unknown email and wrong password give the
        same error after the same amount of work."""
        found = self._users.find_credentials(email.strip())
        if found is None:
            passwords.verify_dummy(password)
            raise InvalidCredentials()
        user, password_hash = found
        if not passwords.verify_password(password_hash, password):
            raise InvalidCredentials()
        if passwords.needs_rehash(password_hash):
            self._users.set_password_hash(user.id, passwords.hash_password(password))
        return self.start_session(user)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token into a new pair. A token used twice revokes its session."""
        signer = self._signer()
        old = signer.verify_refresh(refresh_token)
        new_token, new_claims = signer.issue_refresh(old.user_id, old.family_id)
        outcome = self._sessions.rotate(old, new_claims)
        if outcome is RotationOutcome.REUSED:
            self._sessions.revoke(old.family_id)
            raise RefreshTokenReused()
        if outcome is RotationOutcome.REVOKED:
            raise InvalidToken()
        # The role is read afresh here, so a role change reaches the next access token.
        user = self._users.get(old.user_id)
        return TokenPair(
            access_token=signer.issue_access(user.id, user.role),
            refresh_token=new_token,
            expires_in=signer.access_ttl,
        )

    def profile(self, user_id: str) -> tuple[User, int]:
        """The user and their current balance."""
        return self._users.get(user_id), self._balances.balance(user_id)

    def set_role(self, actor: AccessClaims, user_id: str, role: Role) -> User:
        """An admin sets another user's role."""
        if actor.role is not Role.ADMIN:
            raise Forbidden()
        if actor.user_id == user_id:
            raise OwnRoleChange()
        return self._users.set_role(user_id, role)

    def start_session(self, user: User) -> TokenPair:
        """A new session (token pair) for an already authenticated user."""
        signer = self._signer()
        family_id = secrets.token_urlsafe(16)
        refresh_token, claims = signer.issue_refresh(user.id, family_id)
        self._sessions.start(claims, family_expires_at=int(time.time()) + signer.refresh_ttl)
        return TokenPair(
            access_token=signer.issue_access(user.id, user.role),
            refresh_token=refresh_token,
            expires_in=signer.access_ttl,
        )
