import asyncio

import pytest

from creditml.api.dependencies import require_role
from creditml.auth.roles import Role, role_satisfies
from creditml.auth.tokens import AccessClaims
from creditml.errors import Forbidden


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
