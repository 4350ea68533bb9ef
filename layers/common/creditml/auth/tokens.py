"""JSON Web Tokens: HS256 only, algorithms pinned, exp/iat/sub/typ required.

Two token types share one key but can never stand in for each other: `typ` is checked on
every decode. Refresh tokens also carry `jti` (one-time id) and `fam` (session family) so the
auth service can rotate them and detect reuse; access tokens carry `fam` too, so revoking a
family (logout, reuse, role change) reaches its access tokens (creditml.auth.revocations).

Claims are typed strictly, after the signature check: `exp` and `iat` are JSON integers (not
booleans, numeric strings or floats: we only ever issue integers, and PyJWT alone would
accept `"exp": "9999999999"`), the others non-empty strings. Anything else is invalid_token.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from creditml.auth.roles import Role
from creditml.errors import InvalidToken

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
TokenType = Literal["access", "refresh"]
_REQUIRED = ["exp", "iat", "sub", "typ", "iss"]
_INTEGER_CLAIMS = ("exp", "iat")
_STRING_CLAIMS: dict[TokenType, tuple[str, ...]] = {
    "access": ("sub", "typ", "iss", "role", "fam"),
    "refresh": ("sub", "typ", "iss", "jti", "fam"),
}
# Claims that must be strings wherever they appear, even on a token type that does not need them.
_ANY_STRING_CLAIMS = ("sub", "typ", "iss", "role", "fam", "jti")
VERIFIED_CACHE_SIZE = 1024


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: Role
    expires_at: int
    # The session family the token was issued in ("" only for claims built in code).
    family_id: str = ""


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    token_id: str
    family_id: str
    expires_at: int


class TokenSigner:
    """Issues and verifies tokens with one secret key."""

    def __init__(self, key: bytes, issuer: str, access_ttl: int, refresh_ttl: int) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError("JWT signing key must be at least 32 bytes")
        self._key = key
        self._issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._verified: dict[str, AccessClaims] = {}

    def issue_access(
        self, user_id: str, role: Role, family_id: str | None = None, now: int | None = None
    ) -> str:
        """A short-lived access token for `user_id` acting as `role`, in session family
        `family_id` (a family of its own when none is given: tools and benchmarks)."""
        iat = int(time.time()) if now is None else now
        claims = {
            "sub": user_id,
            "role": str(role),
            "fam": family_id or secrets.token_urlsafe(16),
            "typ": "access",
            "iss": self._issuer,
            "iat": iat,
            "exp": iat + self.access_ttl,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def issue_refresh(
        self, user_id: str, family_id: str, now: int | None = None
    ) -> tuple[str, RefreshClaims]:
        """A one-time refresh token in session family `family_id`, and its claims."""
        iat = int(time.time()) if now is None else now
        token_id = secrets.token_urlsafe(16)
        exp = iat + self.refresh_ttl
        claims = {
            "sub": user_id,
            "typ": "refresh",
            "jti": token_id,
            "fam": family_id,
            "iss": self._issuer,
            "iat": iat,
            "exp": exp,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return token, RefreshClaims(user_id, token_id, family_id, exp)

    def verify_access(self, token: str) -> AccessClaims:
        """Claims of a valid access token; InvalidToken for anything else.

        A token verified once is remembered until it expires (bounded), so a warm container
        does not re-run HMAC and JSON parsing for every request of the same session."""
        known = self._verified.get(token)
        if known is not None and known.expires_at > time.time():
            return known
        claims = self._decode(token, "access")
        try:
            role = Role(claims["role"])
        except (KeyError, ValueError) as exc:
            raise InvalidToken() from exc
        verified = AccessClaims(claims["sub"], role, claims["exp"], claims["fam"])
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def verify_refresh(self, token: str) -> RefreshClaims:
        """Claims of a valid refresh token; InvalidToken for anything else."""
        claims = self._decode(token, "refresh")
        return RefreshClaims(claims["sub"], claims["jti"], claims["fam"], claims["exp"])

    def _decode(self, token: str, expected: TokenType) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken() from exc
        if claims.get("typ") != expected or not _strictly_typed(claims, expected):
            raise InvalidToken()
        return claims


def _strictly_typed(claims: dict[str, Any], expected: TokenType) -> bool:
    """True when the time claims are plain integers and the named claims non-empty strings
    (the signature is already verified: this guards against our own key signing odd types,
    e.g. a token minted by another tool, and against PyJWT's lenient int() coercion)."""
    # `type(...) is int` on purpose: bool is a subclass of int, and True must not be a time.
    if any(type(claims.get(name)) is not int for name in _INTEGER_CLAIMS):
        return False
    if any(not isinstance(claims.get(name), str) for name in _STRING_CLAIMS[expected]):
        return False
    if any(claims.get(name) == "" for name in _STRING_CLAIMS[expected]):
        return False
    return all(isinstance(claims[name], str) for name in _ANY_STRING_CLAIMS if name in claims)
