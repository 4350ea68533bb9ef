"""Roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    PUBLISHER = "publisher"
    ADMIN = "admin"


# Which roles satisfy a requirement: an admin can do everything a publisher can, and so on.
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.USER: frozenset({Role.USER, Role.PUBLISHER, Role.ADMIN}),
    Role.PUBLISHER: frozenset({Role.PUBLISHER, Role.ADMIN}),
    Role.ADMIN: frozenset({Role.ADMIN}),
}


def role_satisfies(actual: Role, required: Role) -> bool:
    """True when a caller holding `actual` may do what needs `required`."""
    return actual in _GRANTS[required]
