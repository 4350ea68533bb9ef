"""Password hashing with Argon2id, a memory-hard KDF (RFC 9106).

Parameters follow OWASP's Password Storage Cheat Sheet minimum for Argon2id (19 MiB, t=2, p=1),
which costs ~20-40 ms on a 512 MB Lambda. Verification is constant-time inside argon2.
`verify_dummy` burns the same work for unknown emails so response time does not reveal
which emails are registered.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
# Bounds the work an attacker can make one login do; far above any real passphrase.
MAX_PASSWORD_LENGTH = 256


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32)


@cache
def _dummy_hash() -> str:
    # A hash of a random-looking constant, computed once per container, used only to spend
    # the same time as a real verification.
    return _hasher().hash("creditml-dummy-password-for-timing")


def hash_password(password: str) -> str:
    """Hash a password into a self-describing Argon2id PHC string (salt included)."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`; never raises on a mismatch."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_dummy(password: str) -> None:
    """Spend the time of one verification for an unknown email, then fail."""
    verify_password(_dummy_hash(), password)


def needs_rehash(password_hash: str) -> bool:
    """True when the stored hash was made with weaker parameters than today's."""
    return _hasher().check_needs_rehash(password_hash)
