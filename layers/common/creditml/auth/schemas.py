"""Request and response bodies of the auth API (validated at the boundary)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from creditml.auth.emails import has_invisible_characters
from creditml.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from creditml.auth.roles import Role

# Deliberately simple: one @, a non-empty local part, a dotted domain, no spaces. Deliverability
# is proven by use, not by a regex (and a DNS lookup has no place on the request path).
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


def _valid_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("must be an email address like name@example.com")
    if has_invisible_characters(value):
        raise ValueError("must not contain invisible or control characters")
    return value


def _not_blank(value: str) -> str:
    # Length alone would admit ten spaces; a password needs something to guess.
    if not value.strip():
        raise ValueError("must not be only whitespace")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
    AfterValidator(_valid_email),
]
Password = Annotated[
    str,
    Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH),
    AfterValidator(_not_blank),
]


class _Body(BaseModel):
    # Unknown members are refused so typos ("pasword") fail loudly instead of silently.
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Body):
    email: Email
    password: Password


class LoginRequest(_Body):
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)]
    # Any string may be tried at login; length rules are for registration only.
    password: Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]


class RefreshRequest(_Body):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class RoleUpdate(_Body):
    role: Role


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")


class UserPublic(BaseModel):
    id: str
    email: str
    role: Role


class Profile(UserPublic):
    balance: int = Field(description="Credits available to spend")


class UserPage(BaseModel):
    items: list[UserPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )
