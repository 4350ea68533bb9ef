"""API keys through the real handlers, under moto: made, used as bearer tokens on every
function, listed (never the key), revoked (refused everywhere once the container's memory of
the key runs out), refused where only a session may act, and the DynamoDB calls a request
with a key costs.

The containers' key verifier runs on an injected clock (no sleeping): every function's app
gets the same verifier, as one warm container would hold it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from creditml.api import dependencies
from creditml.auth.api_keys import CACHE_SECONDS, MAX_KEYS_PER_USER, ApiKeyVerifier, key_hash
from creditml.auth.roles import Role
from creditml.composition.api_keys import api_key_repository
from creditml.composition.core import user_directory
from creditml.devstack.aws import REGION
from creditml.settings import get_settings
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import LABELS, ROWS, model_file, publish
from tests.integration.publishing import grant as _grant
from tests.integration.publishing import predict as _predict

AUTH = "AuthFunction"
BILLING = "BillingFunction"
DAY = 24 * 3600
# One authenticated route per function: the check lives in current_principal, which they share.
ROUTES = [
    (AUTH, "users_me"),
    (BILLING, "billing_balance"),
    ("ModelsFunction", "models_list"),
    ("PredictFunction", "predictions_list"),
    ("ReportsFunction", "reports_usage"),
]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def today(self) -> str:
        return datetime.fromtimestamp(self.now, UTC).date().isoformat()


def _verifier(clock: Clock) -> ApiKeyVerifier:
    return ApiKeyVerifier(api_key_repository(), user_directory(), clock=clock)


@pytest.fixture
def clock(api: Api, monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    verifier = _verifier(clock)
    monkeypatch.setattr(dependencies, "api_key_verifier", lambda: verifier)
    return clock


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The DynamoDB operations made while the test runs, in order, with their table."""
    calls: list[tuple[str, str]] = []
    original = BaseClient._make_api_call

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            calls.append((operation, str(params.get("TableName", ""))))
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return calls


def _request(
    api: Api, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    """A request to the auth function's /api-keys routes."""
    event = load_event("api_keys_list", access_token=token or "")
    event["routeKey"] = event["requestContext"]["routeKey"] = (
        f"{method} /api-keys/{{id}}" if path != "/api-keys" else f"{method} /api-keys"
    )
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    if token is None:
        del event["headers"]["authorization"]
    if body is not None:
        event = with_body(event, body)
        event["headers"]["content-type"] = "application/json"
    return api.call(AUTH, event)


def _create(api: Api, token: str, name: str = "nightly job") -> dict[str, Any]:
    status, created = _request(api, "POST", "/api-keys", token, {"name": name})
    assert status == 201, created
    return created


def _listed(api: Api, token: str) -> list[dict[str, Any]]:
    status, body = _request(api, "GET", "/api-keys", token)
    assert status == 200, body
    return list(body["items"])


def _revoke(api: Api, token: str, key_id: str) -> tuple[int, Any]:
    return _request(api, "DELETE", f"/api-keys/{key_id}", token)


def _get(api: Api, function: str, event: str, token: str) -> tuple[int, Any]:
    return api.call(function, load_event(event, access_token=token))


def _accepted_everywhere(api: Api, token: str) -> bool:
    return all(_get(api, function, event, token)[0] == 200 for function, event in ROUTES)


def _refused_everywhere(api: Api, token: str) -> bool:
    answers = [_get(api, function, event, token) for function, event in ROUTES]
    return all(s == 401 and body["code"] == "invalid_token" for s, body in answers)


def _table_items() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", region_name=REGION)
    return list(client.scan(TableName=get_settings().api_keys_table)["Items"])


def test_a_key_acts_as_its_owner_until_revoked(api: Api, clock: Clock) -> None:
    owner = register_and_login(api, "kai@example.com")
    created = _create(api, owner["access"], "  nightly job  ")
    assert set(created) == {"id", "name", "key", "created_at"}
    assert created["name"] == "nightly job"
    assert created["key"].startswith("cml_")
    assert len(created["key"]) >= 4 + 43
    key = created["key"]

    # Like an access token of its owner, on every function.
    assert _accepted_everywhere(api, key)
    status, me = _get(api, AUTH, "users_me", key)
    assert (status, me["id"], me["role"]) == (200, owner["id"], "user")

    # Listed without the key or its hash, with the day it was used.
    (listed,) = _listed(api, owner["access"])
    assert listed == {
        "id": created["id"],
        "name": "nightly job",
        "created_at": created["created_at"],
        "last_used_day": clock.today(),
    }

    assert _revoke(api, owner["access"], created["id"]) == (204, None)
    assert _listed(api, owner["access"]) == []
    # A container that verified the key moments ago still knows it (at most CACHE_SECONDS)...
    clock.now += CACHE_SECONDS - 1
    assert _get(api, BILLING, "billing_balance", key)[0] == 200
    # ...and refuses it once that memory runs out, on every function.
    clock.now += 1
    assert _refused_everywhere(api, key)


def test_a_fresh_container_refuses_a_revoked_key_at_once(api: Api, clock: Clock) -> None:
    owner = register_and_login(api, "lee@example.com")
    created = _create(api, owner["access"])
    assert _revoke(api, owner["access"], created["id"])[0] == 204
    assert _refused_everywhere(api, created["key"])


@pytest.mark.usefixtures("clock")
def test_keys_are_refused_where_only_a_session_may_act(api: Api) -> None:
    owner = register_and_login(api, "max@example.com", password="correct horse battery")
    created = _create(api, owner["access"])
    bearer = f"Bearer {created['key']}"
    key_routes = [
        _request(api, "POST", "/api-keys", created["key"], {"name": "minted by a key"}),
        _request(api, "GET", "/api-keys", created["key"]),
        _revoke(api, created["key"], created["id"]),
    ]
    auth_routes = []
    for name, body in [
        ("auth_login", {"email": "max@example.com", "password": "correct horse battery"}),
        ("auth_register", {"email": "new@example.com", "password": "correct horse battery"}),
        ("auth_refresh", {"refresh_token": owner["refresh"]}),
        ("auth_logout", {"refresh_token": owner["refresh"]}),
    ]:
        event = with_body(load_event(name), body)
        event["headers"]["authorization"] = bearer
        auth_routes.append(api.call(AUTH, event))
    for status, problem in key_routes + auth_routes:
        assert (status, problem["code"]) == (403, "api_key_not_allowed")
    # Nothing changed: the one key is still there and works; the session too.
    assert [key["id"] for key in _listed(api, owner["access"])] == [created["id"]]
    assert _get(api, BILLING, "billing_balance", created["key"])[0] == 200
    status, _ = api.call(AUTH, load_event("auth_refresh", refresh_token=owner["refresh"]))
    assert status == 200
    # Without a key, /auth/* works as before.
    event = with_body(
        load_event("auth_login"), {"email": "max@example.com", "password": "correct horse battery"}
    )
    assert api.call(AUTH, event)[0] == 200


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    "token", ["cml_" + "A" * 43, "cml_" + "0123456789abcdef" * 4, "cml_not-a-key", "cml_"]
)
def test_unknown_and_malformed_keys_are_unauthenticated(api: Api, token: str) -> None:
    status, problem = _get(api, BILLING, "billing_balance", token)
    assert (status, problem["code"]) == (401, "invalid_token")


@pytest.mark.usefixtures("clock")
def test_the_table_holds_the_hash_never_the_key(api: Api) -> None:
    owner = register_and_login(api, "ned@example.com")
    created = _create(api, owner["access"])
    _get(api, BILLING, "billing_balance", created["key"])
    items = _table_items()
    stored = repr(items)
    assert created["key"] not in stored
    assert created["key"].removeprefix("cml_") not in stored
    assert key_hash(created["key"]) in stored


@pytest.mark.usefixtures("clock")
def test_another_users_key_or_an_unknown_id_is_not_found(api: Api) -> None:
    owner = register_and_login(api, "oli@example.com")
    other = register_and_login(api, "pia@example.com")
    created = _create(api, owner["access"])
    for token, key_id in ((other["access"], created["id"]), (owner["access"], "no-such-key")):
        status, problem = _revoke(api, token, key_id)
        assert (status, problem["code"]) == (404, "api_key_not_found")
    assert _listed(api, other["access"]) == []
    assert [key["id"] for key in _listed(api, owner["access"])] == [created["id"]]
    assert _get(api, BILLING, "billing_balance", created["key"])[0] == 200


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "tab\there"},
        {"name": "evil\u202eoverride"},
        {"name": 42},
        {"name": None},
    ],
)
def test_bad_names_are_422_and_change_nothing(api: Api, body: Any) -> None:
    owner = register_and_login(api, "quy@example.com")
    status, problem = _request(api, "POST", "/api-keys", owner["access"], body)
    assert (status, problem["code"]) == (422, "validation_error")
    assert problem["errors"][0]["field"].startswith("body")
    assert _listed(api, owner["access"]) == []
    assert _table_items() == []


@pytest.mark.usefixtures("clock")
def test_a_user_may_hold_a_limited_number_of_keys(api: Api) -> None:
    owner = register_and_login(api, "ray@example.com")
    made = [_create(api, owner["access"], f"job {n}") for n in range(MAX_KEYS_PER_USER)]
    status, problem = _request(api, "POST", "/api-keys", owner["access"], {"name": "one more"})
    assert (status, problem["code"], problem["maximum"]) == (
        409,
        "api_key_limit_reached",
        MAX_KEYS_PER_USER,
    )
    listed = _listed(api, owner["access"])
    assert len(listed) == MAX_KEYS_PER_USER
    assert [key["id"] for key in listed] == [key["id"] for key in reversed(made)]  # newest first
    # Another user is not affected; a revoked key frees its place.
    assert _create(api, register_and_login(api, "sue@example.com")["access"])
    assert _revoke(api, owner["access"], made[0]["id"])[0] == 204
    assert _create(api, owner["access"], "one more")["name"] == "one more"


def test_a_remembered_key_costs_no_dynamodb_call(
    api: Api, clock: Clock, dynamodb_calls: list[tuple[str, str]]
) -> None:
    owner = register_and_login(api, "tom@example.com")
    key = _create(api, owner["access"])["key"]
    settings = get_settings()
    balance = load_event("billing_balance", access_token=key)

    dynamodb_calls.clear()
    assert api.call(BILLING, balance)[0] == 200
    # The container's first use: the key, its owner's role, the day's use; then the request.
    assert dynamodb_calls == [
        ("GetItem", settings.api_keys_table),
        ("GetItem", settings.users_table),
        ("UpdateItem", settings.api_keys_table),
        ("UpdateItem", settings.limits_table),
        ("GetItem", settings.ledger_table),
    ]

    dynamodb_calls.clear()
    for _ in range(5):
        clock.now += (CACHE_SECONDS - 1) // 5
        assert api.call(BILLING, balance)[0] == 200
    # Only the request's count against the rate limit and the route's own read, as with an
    # access token.
    assert (
        dynamodb_calls
        == [
            ("UpdateItem", settings.limits_table),
            ("GetItem", settings.ledger_table),
        ]
        * 5
    )

    dynamodb_calls.clear()
    clock.now += CACHE_SECONDS
    assert api.call(BILLING, balance)[0] == 200
    assert [table for _, table in dynamodb_calls[:2]] == [
        settings.api_keys_table,
        settings.users_table,
    ]
    assert len(dynamodb_calls) == 4  # no second last-use write the same day


def test_last_used_day_is_written_once_a_day(
    api: Api, clock: Clock, dynamodb_calls: list[tuple[str, str]]
) -> None:
    owner = register_and_login(api, "uma@example.com")
    created = _create(api, owner["access"])
    table = get_settings().api_keys_table
    assert _listed(api, owner["access"])[0]["last_used_day"] is None

    def writes() -> int:
        return dynamodb_calls.count(("UpdateItem", table))

    first_day = clock.today()
    for _ in range(4):
        assert _get(api, BILLING, "billing_balance", created["key"])[0] == 200
        clock.now += CACHE_SECONDS  # read again each time: still one write this day
    assert writes() == 1
    assert _listed(api, owner["access"])[0]["last_used_day"] == first_day

    clock.now += DAY
    for _ in range(3):
        assert _get(api, BILLING, "billing_balance", created["key"])[0] == 200
    assert writes() == 2
    assert _listed(api, owner["access"])[0]["last_used_day"] == clock.today() != first_day

    # Another container's first use that day tries once, and leaves the day as it is; an
    # earlier day (a container whose clock lags) never overwrites a later one.
    for lagging in (0, -DAY):
        other = Clock()
        other.now = clock.now + lagging
        _verifier(other).verify(created["key"])
    assert writes() == 4
    assert _listed(api, owner["access"])[0]["last_used_day"] == clock.today()


def test_the_key_of_a_deleted_user_stops_working(api: Api, clock: Clock) -> None:
    owner = register_and_login(api, "val@example.com")
    key = _create(api, owner["access"])["key"]
    assert _get(api, BILLING, "billing_balance", key)[0] == 200
    boto3.client("dynamodb", region_name=REGION).delete_item(
        TableName=get_settings().users_table, Key={"pk": {"S": f"USER#{owner['id']}"}}
    )
    clock.now += CACHE_SECONDS
    assert _refused_everywhere(api, key)


def test_a_key_carries_the_role_stored_now(api: Api, clock: Clock) -> None:
    owner = register_and_login(api, "wes@example.com")
    key = _create(api, owner["access"])["key"]
    status, problem = api.call(
        "ModelsFunction",
        with_body(load_event("models_create", access_token=key), {"name": "m", "price": 1}),
    )
    assert (status, problem["code"]) == (403, "forbidden")
    user_directory().set_role(owner["id"], Role.PUBLISHER)
    clock.now += CACHE_SECONDS
    assert _get(api, AUTH, "users_me", key)[1]["role"] == "publisher"
    status, body = api.call(
        "ModelsFunction",
        with_body(load_event("models_create", access_token=key), {"name": "m", "price": 1}),
    )
    assert status == 201, body


@pytest.mark.usefixtures("clock")
def test_a_warm_prediction_with_a_key_makes_exactly_one_dynamodb_call(api: Api) -> None:
    publisher = register_and_login(api, "xia@example.com", role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"], model_file(), price=2)
    user = register_and_login(api, "yves@example.com")
    _grant(api, user["id"], 100)
    key = _create(api, user["access"])["key"]
    body = {"inputs": ROWS[:1].tolist()}
    assert _predict(api, key, model_id, body)[0] == 200  # warm up: model, key, day's use
    assert LABELS.size  # the fixture data the model was fitted on

    calls: list[str] = []
    original = BaseClient._make_api_call

    def counting(client: BaseClient, operation: str, params: Any) -> Any:
        calls.append(f"{client.meta.service_model.service_name}:{operation}")
        return original(client, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", counting)
        status, receipt = _predict(api, key, model_id, body)
    assert status == 200, receipt
    assert receipt["cost"] == 2
    assert calls == ["dynamodb:TransactWriteItems"]
