import asyncio

import pytest

from creditml.api.dependencies import require_role, verified_principal
from creditml.auth.roles import Role, role_satisfies
from creditml.auth.tokens import AccessClaims
from creditml.errors import Forbidden, InvalidToken, UserNotFound


@pytest.mark.parametrize(
    ("actual", "required", "allowed"),
    [
        (Role.USER, Role.USER, True),
        (Role.USER, Role.PUBLISHER, False),
        (Role.USER, Role.ADMIN, False),
        (Role.PUBLISHER, Role.USER, True),
        (Role.PUBLISHER, Role.PUBLISHER, True),
        (Role.PUBLISHER, Role.ADMIN, False),
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.PUBLISHER, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_role_matrix(actual: Role, required: Role, allowed: bool) -> None:
    assert role_satisfies(actual, required) is allowed


@pytest.mark.parametrize("role", [Role.USER, Role.PUBLISHER])
def test_admin_dependency_refuses_non_admins(role: Role) -> None:
    check = require_role(Role.ADMIN).dependency  # type: ignore[attr-defined]
    with pytest.raises(Forbidden):
        asyncio.run(check(AccessClaims("u1", role, 0)))


def test_admin_dependency_admits_admins() -> None:
    check = require_role(Role.ADMIN).dependency  # type: ignore[attr-defined]
    claims = AccessClaims("u1", Role.ADMIN, 0)
    assert asyncio.run(check(claims)) is claims


class _StoredRoles:
    def __init__(self, roles: dict[str, Role]) -> None:
        self._roles = roles

    def stored_role(self, user_id: str) -> Role:
        if user_id not in self._roles:
            raise UserNotFound()
        return self._roles[user_id]


def test_verified_principal_takes_the_stored_role_over_the_token() -> None:
    token_says = AccessClaims("u1", Role.ADMIN, 0, "fam1")
    verified = verified_principal(token_says, _StoredRoles({"u1": Role.USER}))  # type: ignore[arg-type]
    assert verified == AccessClaims("u1", Role.USER, 0, "fam1")


def test_verified_principal_of_a_user_gone_is_unauthenticated() -> None:
    with pytest.raises(InvalidToken):
        verified_principal(AccessClaims("u1", Role.ADMIN, 0), _StoredRoles({}))  # type: ignore[arg-type]
