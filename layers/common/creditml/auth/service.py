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
from creditml.limits import UNKNOWN_SOURCE, LoginCounters, LoginKeys, LoginThrottle
from creditml.users import User


class UserStore(Protocol):
    def create(self, user: User, password_hash: str) -> None: ...

    def get(self, user_id: str) -> User: ...

    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    def set_role(self, user_id: str, role: Role) -> User: ...


class LoginReads(Protocol):
    """What a log-in reads: the email's claim together with the attempt's throttle counters
    (one call), then the user's credentials."""

    def find_login(self, email: str, counter_keys: LoginKeys) -> tuple[str | None, LoginCounters]:
        """The id of the user who claimed `email` (or None) and the counters at
        `counter_keys`."""
        ...

    def credentials(self, user_id: str) -> tuple[User, str] | None:
        """The user with this id and their password hash, or None."""
        ...


class SessionStore(Protocol):
    def start(self, first: RefreshClaims, family_expires_at: int) -> None: ...

    def rotate(self, old: RefreshClaims, new: RefreshClaims) -> RotationOutcome: ...

    def revoke(self, family_id: str, user_id: str) -> bool: ...

    def live_families(self, user_id: str) -> list[str]: ...


class BalanceReader(Protocol):
    def balance(self, account_id: str) -> int: ...


class AuthService:
    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        signer: Callable[[], TokenSigner],
        balances: BalanceReader,
        logins: LoginReads,
        throttle: LoginThrottle,
    ) -> None:
        self._users = users
        self._logins = logins
        self._throttle = throttle
        self._sessions = sessions
        self._signer = signer
        self._balances = balances

    def register(self, email: str, password: str, role: Role = Role.USER) -> User:
        """Create an account. EmailTaken when the email exists in any letter case or
        Unicode compatibility form (creditml.auth.emails)."""
        user = User(id=str(uuid.uuid4()), email=email, role=role, created_at=datetime.now(UTC))
        self._users.create(user, passwords.hash_password(password))
        return user

    def login(self, email: str, password: str, source_ip: str = UNKNOWN_SOURCE) -> TokenPair:
        """A fresh session for valid credentials. Unknown email and wrong password give the
        same error after the same amount of work, and count alike as failures.

        Throttled per email and per source address (RateLimited, creditml.limits) before
        the password is looked at, whatever it is, and then nothing is written. The
        counters come in the same call as the email's claim, so a successful log-in costs
        no call for throttling; a failed one writes the counters."""
        email = email.strip()
        keys = self._throttle.keys(email, source_ip)
        user_id, counters = self._logins.find_login(email, keys)
        self._throttle.check(keys, counters)
        user = self._verified(user_id, password)
        if user is None:
            self._throttle.record_failure(keys, counters)
            raise InvalidCredentials()
        return self.start_session(user)

    def _verified(self, user_id: str | None, password: str) -> User | None:
        """The user when `password` is theirs, else None (after the same hashing work)."""
        found = self._logins.credentials(user_id) if user_id is not None else None
        if found is None:
            passwords.verify_dummy(password)
            return None
        user, password_hash = found
        if not passwords.verify_password(password_hash, password):
            return None
        if passwords.needs_rehash(password_hash):
            self._users.set_password_hash(user.id, passwords.hash_password(password))
        return user

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token into a new pair. A token used twice revokes its session."""
        signer = self._signer()
        old = signer.verify_refresh(refresh_token)
        new_token, new_claims = signer.issue_refresh(old.user_id, old.family_id)
        outcome = self._sessions.rotate(old, new_claims)
        if outcome is RotationOutcome.REUSED:
            self._sessions.revoke(old.family_id, old.user_id)
            raise RefreshTokenReused()
        if outcome is RotationOutcome.REVOKED:
            raise InvalidToken()
        # The role is read afresh here, so a role change reaches the next access token.
        user = self._users.get(old.user_id)
        return TokenPair(
            access_token=signer.issue_access(user.id, user.role, old.family_id),
            refresh_token=new_token,
            expires_in=signer.access_ttl,
        )

    def logout(self, refresh_token: str) -> None:
        """End the session of a refresh token: its family is revoked, so its refresh tokens
        no longer rotate and its access tokens stop working within a minute.
        InvalidToken for an invalid token or a session already ended."""
        claims = self._signer().verify_refresh(refresh_token)
        if not self._sessions.revoke(claims.family_id, claims.user_id):
            raise InvalidToken()

    def profile(self, user_id: str) -> tuple[User, int]:
        """The user and their current balance."""
        return self._users.get(user_id), self._balances.balance(user_id)

    def set_role(self, actor: AccessClaims, user_id: str, role: Role) -> User:
        """An admin sets another user's role (`actor.role` must be the stored one). Every
        session the user has at that moment is revoked, so no token keeps the old role; a
        login after the change starts a fresh session with the new role."""
        if actor.role is not Role.ADMIN:
            raise Forbidden()
        if actor.user_id == user_id:
            raise OwnRoleChange()
        user = self._users.set_role(user_id, role)
        # Listed after the role is written: a session started later reads the new role.
        for family_id in self._sessions.live_families(user_id):
            self._sessions.revoke(family_id, user_id)
        return user

    def start_session(self, user: User) -> TokenPair:
        """A new session (token pair) for an already authenticated user."""
        signer = self._signer()
        family_id = secrets.token_urlsafe(16)
        refresh_token, claims = signer.issue_refresh(user.id, family_id)
        self._sessions.start(claims, family_expires_at=int(time.time()) + signer.refresh_ttl)
        return TokenPair(
            access_token=signer.issue_access(user.id, user.role, family_id),
            refresh_token=refresh_token,
            expires_in=signer.access_ttl,
        )
