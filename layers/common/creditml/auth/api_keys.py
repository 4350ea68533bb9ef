"""API keys for programs (DESIGN §11): made, listed and revoked by their owner with an access
token; presented as `Authorization: Bearer cml_...`, they act as the owner on every route
except /api-keys and /auth/*.

A key is `cml_` + 32 random bytes in URL-safe base64, shown once. Only its SHA-256 is stored:
a key has 256 bits of entropy, so nobody can search for the key behind a leaked hash, and
a slow password hash (built to stretch guessable secrets) would buy nothing but a slower
lookup (docs/DECISIONS.md, "API keys").

Verifying a key on a warm container costs no DynamoDB call: a key verified once is
remembered, with its owner's role read at that moment, for at most CACHE_SECONDS. A
revoked key, or the key of a user who no longer exists, is therefore refused everywhere
within that time. The day a key was last used is written at most once per key per UTC day
per container, by a conditional update that also leaves a later day alone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.errors import InvalidToken, UserNotFound
from creditml.observability import logger

PREFIX = "cml_"
KEY_BYTES = 32
NAME_MAX_LENGTH = 100
MAX_KEYS_PER_USER = 20
# How long a verified key is trusted without reading it again: the revocation promise.
CACHE_SECONDS = 60
# Bound on the keys (and their last-use days) one container remembers.
CACHE_SIZE = 1024
# What a key of ours can look like: 32 bytes make 43 characters; longer keys stay valid
# should the size grow. Anything else is refused before any lookup.
_WELL_FORMED = re.compile(rf"^{PREFIX}[A-Za-z0-9_-]{{43,128}}$")


def is_api_key(credential: str) -> bool:
    """Whether a bearer credential is meant as an API key (rather than an access token)."""
    return credential.startswith(PREFIX)


def generate_key() -> str:
    """A new secret key: the prefix and KEY_BYTES from the OS's CSPRNG."""
    return PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyClaims(AccessClaims):
    """The principal of a request made with an API key: its owner (with the role stored when
    the key was last read) and which key it was."""

    key_id: str = ""


@dataclass(frozen=True)
class ApiKey:
    """A key as its owner sees it listed: never the key itself nor its hash."""

    id: str
    name: str
    created_at: datetime
    last_used_day: date | None = None


@dataclass(frozen=True)
class CreatedApiKey:
    """A key just made: its listing, and the secret shown this once."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class KeyOwner:
    """What the lookup of a key's hash finds."""

    key_id: str
    user_id: str


class ApiKeyStore(Protocol):
    def create(self, user_id: str, key: ApiKey, hashed: str, maximum: int) -> None:
        """Store a key; TooManyApiKeys when the user already has `maximum` keys."""
        ...

    def keys_of(self, user_id: str) -> list[ApiKey]:
        """The user's keys, newest first."""
        ...

    def revoke(self, user_id: str, key_id: str) -> None:
        """Delete one of the user's keys; ApiKeyNotFound when the user has no such key."""
        ...

    def owner_of(self, hashed: str) -> KeyOwner | None:
        """The key with this hash and its owner (a strongly consistent read), or None."""
        ...

    def mark_used(self, user_id: str, key_id: str, day: date) -> None:
        """Record `day` as the key's last use unless a day as late is already recorded (or
        the key is gone)."""
        ...


class StoredRoles(Protocol):
    def stored_role(self, user_id: str) -> Role:
        """The user's role now; UserNotFound when there is no such user."""
        ...


class ApiKeyService:
    """What an owner does with their keys (the routes under /api-keys)."""

    def __init__(
        self,
        store: ApiKeyStore,
        maximum: int = MAX_KEYS_PER_USER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._maximum = maximum
        self._clock = clock

    def create(self, user_id: str, name: str) -> CreatedApiKey:
        """A new key named `name` (already validated) for `user_id`; TooManyApiKeys at the
        cap, with nothing stored."""
        secret = generate_key()
        created_at = datetime.fromtimestamp(self._clock(), UTC)
        key = ApiKey(id=str(uuid.uuid4()), name=name, created_at=created_at)
        self._store.create(user_id, key, key_hash(secret), self._maximum)
        return CreatedApiKey(key=key, secret=secret)

    def list(self, user_id: str) -> list[ApiKey]:
        return self._store.keys_of(user_id)

    def revoke(self, user_id: str, key_id: str) -> None:
        """Revoke one of the caller's keys: refused everywhere within CACHE_SECONDS."""
        self._store.revoke(user_id, key_id)


@dataclass(frozen=True)
class _Verified:
    claims: ApiKeyClaims
    until: float


class ApiKeyVerifier:
    """A container's verification of API keys, with its memory of recently verified ones.

    Not thread-safe beyond what a dict offers: a Lambda container serves one request at a
    time, and a race on the local stack only costs a read or a last-use update more."""

    def __init__(
        self,
        store: ApiKeyStore,
        roles: StoredRoles,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._store = store
        self._roles = roles
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._verified: dict[str, _Verified] = {}
        self._unknown: dict[str, float] = {}  # hashes found to be no key, until when
        self._used_on: dict[str, date] = {}

    def verify(self, key: str) -> ApiKeyClaims:
        """The principal of a live key whose owner exists; InvalidToken for anything else.

        Remembered keys cost no call; otherwise two strongly consistent reads (the key, its
        owner's role). The first use of a key on a UTC day adds one conditional update. A
        well-formed key that is no key is remembered as such too, so repeating it (a
        misconfigured job, a guesser) costs no read either."""
        if not _WELL_FORMED.match(key):
            raise InvalidToken()
        hashed = key_hash(key)
        now = self._clock()
        if now < self._unknown.get(hashed, 0.0):
            raise InvalidToken()
        known = self._verified.get(hashed)
        claims = (
            known.claims if known is not None and now < known.until else self._load(hashed, now)
        )
        self._note_use(claims, now)
        return claims

    def _load(self, hashed: str, now: float) -> ApiKeyClaims:
        self._verified.pop(hashed, None)
        owner = self._store.owner_of(hashed)
        if owner is None:
            if len(self._unknown) >= CACHE_SIZE:
                self._unknown.clear()
            self._unknown[hashed] = now + self._cache_seconds
            raise InvalidToken()
        try:
            role = self._roles.stored_role(owner.user_id)
        except UserNotFound as exc:
            raise InvalidToken() from exc
        until = now + self._cache_seconds
        claims = ApiKeyClaims(owner.user_id, role, int(until), key_id=owner.key_id)
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[hashed] = _Verified(claims, until)
        return claims

    def _note_use(self, claims: ApiKeyClaims, now: float) -> None:
        today = datetime.fromtimestamp(now, UTC).date()
        noted = self._used_on.get(claims.key_id)
        if noted is not None and noted >= today:
            return
        try:
            self._store.mark_used(claims.user_id, claims.key_id, today)
        except Exception:  # noqa: BLE001 - bookkeeping: never fail the caller's request for it
            logger().warning("Could not record an API key's use", extra={"key_id": claims.key_id})
            return  # not remembered: the next request tries again
        if len(self._used_on) >= CACHE_SIZE:
            self._used_on.clear()
        self._used_on[claims.key_id] = today
