"""Logout, revocation reaching access tokens on every function within the refresh interval,
and roles checked against the stored one: through the real handlers, under moto.

The container's revocation list runs on an injected clock (no sleeping): each function's
app gets the same list through `get_revocations`, as one warm container would hold it."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from creditml.api.dependencies import get_revocations
from creditml.auth.revocations import REFRESH_INTERVAL_SECONDS, RevocationList
from creditml.auth.roles import Role
from creditml.composition.auth import auth_service
from creditml.composition.core import session_repository
from creditml.devstack.aws import REGION
from creditml.settings import get_settings
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login

AUTH = "AuthFunction"
BILLING = "BillingFunction"
PASSWORD = "correct horse battery"
# One authenticated route per function: the check lives in current_principal, which they share.
ROUTES = [
    (AUTH, "users_me"),
    (BILLING, "billing_balance"),
    ("ModelsFunction", "models_list"),
    ("PredictFunction", "predictions_list"),
]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(api: Api) -> Clock:
    clock = Clock()
    revocations = RevocationList(session_repository(), retention_seconds=960, clock=clock)
    for function in {function for function, _ in ROUTES}:
        api.override(function, get_revocations, revocations)
    return clock


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The DynamoDB operations made while the test runs, in order."""
    calls: list[str] = []
    original = BaseClient._make_api_call

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            calls.append(operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return calls


def _get(api: Api, function: str, event: str, token: str) -> tuple[int, Any]:
    return api.call(function, load_event(event, access_token=token))


def _logout(api: Api, refresh_token: str) -> tuple[int, Any]:
    return api.call(AUTH, load_event("auth_logout", refresh_token=refresh_token))


def _refresh(api: Api, refresh_token: str) -> tuple[int, Any]:
    return api.call(AUTH, load_event("auth_refresh", refresh_token=refresh_token))


def _set_role(api: Api, token: str, user_id: str, role: str) -> tuple[int, Any]:
    event = load_event("users_set_role", access_token=token, demo_user_id=user_id)
    return api.call(AUTH, with_body(event, {"role": role}))


def _refused_everywhere(api: Api, token: str) -> bool:
    answers = [_get(api, function, event, token) for function, event in ROUTES]
    return all(s == 401 and body["code"] == "invalid_token" for s, body in answers)


def _accepted_everywhere(api: Api, token: str) -> bool:
    return all(_get(api, function, event, token)[0] == 200 for function, event in ROUTES)


def test_logout_revokes_the_session_and_its_access_tokens_within_the_interval(
    api: Api, clock: Clock
) -> None:
    session = register_and_login(api, "lou@example.com")
    assert _accepted_everywhere(api, session["access"])

    status, body = _logout(api, session["refresh"])
    assert (status, body) == (204, None)
    # The refresh token is dead at once...
    assert _refresh(api, session["refresh"])[1]["code"] == "invalid_token"
    # ...the access token at the container's next refresh of its list, on every function.
    clock.advance(REFRESH_INTERVAL_SECONDS)
    assert _refused_everywhere(api, session["access"])


def test_other_sessions_survive_a_logout(api: Api, clock: Clock) -> None:
    first = register_and_login(api, "mo@example.com")
    second = auth_service().login("mo@example.com", PASSWORD)
    assert _logout(api, first["refresh"])[0] == 204
    clock.advance(REFRESH_INTERVAL_SECONDS)
    assert _accepted_everywhere(api, second.access_token)
    assert _refresh(api, second.refresh_token)[0] == 200


@pytest.mark.usefixtures("clock")
def test_logout_refuses_invalid_tokens_and_ended_sessions(api: Api) -> None:
    session = register_and_login(api, "ned@example.com")
    for token in ("not.a.token", session["access"]):
        status, problem = _logout(api, token)
        assert (status, problem["code"]) == (401, "invalid_token")
    assert _logout(api, session["refresh"])[0] == 204
    status, problem = _logout(api, session["refresh"])
    assert (status, problem["code"]) == (401, "invalid_token")


def test_reuse_detection_reaches_the_access_tokens_too(api: Api, clock: Clock) -> None:
    session = register_and_login(api, "oz@example.com")
    status, rotated = _refresh(api, session["refresh"])
    assert status == 200
    assert _refresh(api, session["refresh"])[1]["code"] == "refresh_token_reused"
    clock.advance(REFRESH_INTERVAL_SECONDS)
    assert _refused_everywhere(api, rotated["access_token"])
    assert _refused_everywhere(api, session["access"])


def test_the_warm_path_reads_revocations_once_per_interval(
    api: Api, clock: Clock, dynamodb_calls: list[str]
) -> None:
    session = register_and_login(api, "pat@example.com")
    balance = load_event("billing_balance", access_token=session["access"])
    api.call(BILLING, balance)  # the container's first request loads the list
    dynamodb_calls.clear()

    for _ in range(5):
        clock.advance((REFRESH_INTERVAL_SECONDS - 1) / 5)
        assert api.call(BILLING, balance)[0] == 200
    # Only the request's count against the rate limit and the route's own balance read: no
    # revocation Query.
    assert dynamodb_calls == ["UpdateItem", "GetItem"] * 5

    dynamodb_calls.clear()
    clock.advance(1)
    assert api.call(BILLING, balance)[0] == 200
    assert dynamodb_calls == ["Query", "UpdateItem", "GetItem"]


def test_a_role_change_revokes_every_session_of_that_moment_but_not_later_ones(
    api: Api, clock: Clock
) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    publisher = register_and_login(api, "quin@example.com", role=Role.PUBLISHER)
    other_device = auth_service().login("quin@example.com", PASSWORD)

    assert _set_role(api, admin["access"], publisher["id"], "user")[0] == 200
    # A login right after the change (same second, as like as not) starts a valid session.
    after = auth_service().login("quin@example.com", PASSWORD)

    for refresh_token in (publisher["refresh"], other_device.refresh_token):
        assert _refresh(api, refresh_token)[1]["code"] == "invalid_token"
    clock.advance(REFRESH_INTERVAL_SECONDS)
    assert _refused_everywhere(api, publisher["access"])
    assert _refused_everywhere(api, other_device.access_token)
    assert _accepted_everywhere(api, after.access_token)
    _, me = _get(api, AUTH, "users_me", after.access_token)
    assert me["role"] == "user"
    assert _refresh(api, after.refresh_token)[0] == 200


@pytest.mark.usefixtures("clock")
def test_a_demoted_admin_is_refused_at_once_though_the_token_says_admin(api: Api) -> None:
    root = register_and_login(api, "root@example.com", role=Role.ADMIN)
    deputy = register_and_login(api, "deputy@example.com", role=Role.ADMIN)
    target = register_and_login(api, "rae@example.com")
    assert _set_role(api, root["access"], deputy["id"], "user")[0] == 200

    # No clock advance: the revocation list has not caught up, the stored role has.
    status, problem = _set_role(api, deputy["access"], target["id"], "publisher")
    assert (status, problem["code"]) == (403, "forbidden")
    grant = load_event("billing_grant", access_token=deputy["access"], demo_user_id=target["id"])
    grant["headers"]["idempotency-key"] = "grant-after-demotion"
    status, problem = api.call(BILLING, grant)
    assert (status, problem["code"]) == (403, "forbidden")
    # An admin still an admin grants as before.
    grant = load_event("billing_grant", access_token=root["access"], demo_user_id=target["id"])
    grant["headers"]["idempotency-key"] = "grant-by-root"
    assert api.call(BILLING, grant)[0] == 201


@pytest.mark.usefixtures("clock")
def test_a_deleted_user_is_unauthenticated_on_checked_routes(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    target = register_and_login(api, "sal@example.com")
    boto3.client("dynamodb", region_name=REGION).delete_item(
        TableName=get_settings().users_table, Key={"pk": {"S": f"USER#{admin['id']}"}}
    )
    status, problem = _set_role(api, admin["access"], target["id"], "publisher")
    assert (status, problem["code"]) == (401, "invalid_token")
