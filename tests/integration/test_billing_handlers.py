"""The billing routes through the billing function's real handler, under moto. Every
refused request leaves the balance and the ledger exactly as they were."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from creditml.auth.roles import Role
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login

BILLING = "BillingFunction"


def _key() -> str:
    return str(uuid.uuid4())


def _top_up(
    api: Api, token: str, body: Any, key: str | None = None, *, raw: bool = False
) -> tuple[int, dict[str, Any]]:
    event = load_event("billing_top_up", access_token=token, idempotency_key=key or _key())
    if key == "":
        del event["headers"]["idempotency-key"]
    return api.call(BILLING, with_body(event, body))


def _top_up_response(api: Api, token: str, body: Any, key: str) -> dict[str, Any]:
    from creditml.devstack import runtime

    event = load_event("billing_top_up", access_token=token, idempotency_key=key)
    return dict(runtime.invoke(api._template.functions[BILLING], with_body(event, body)))


def _balance(api: Api, token: str) -> int:
    status, body = api.call(BILLING, load_event("billing_balance", access_token=token))
    assert status == 200
    return int(body["balance"])


def _page(api: Api, token: str, query: str) -> tuple[int, dict[str, Any]]:
    event = load_event("billing_transactions", access_token=token)
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&") if part)
    return api.call(BILLING, event)


def _ledger(api: Api, token: str) -> list[dict[str, Any]]:
    status, page = _page(api, token, "limit=100")
    assert status == 200
    return list(page["items"])


def test_new_account_has_zero_balance_and_empty_ledger(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    assert _balance(api, user["access"]) == 0
    assert _page(api, user["access"], "")[1] == {"items": [], "next_cursor": None}


def test_top_up_credits_once_and_shows_everywhere(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    status, entry = _top_up(api, user["access"], {"amount": 120})
    assert status == 201
    assert entry["kind"] == "top_up"
    assert (entry["amount"], entry["balance_after"], entry["balance_exact"]) == (120, 120, True)
    assert entry["details"]["payment_provider"] == "stub"
    assert _balance(api, user["access"]) == 120
    me = api.call("AuthFunction", load_event("users_me", access_token=user["access"]))[1]
    assert me["balance"] == 120
    assert [item["id"] for item in _ledger(api, user["access"])] == [entry["id"]]


def test_replay_returns_the_original_entry_and_credits_nothing(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    key = _key()
    first = _top_up_response(api, user["access"], {"amount": 30}, key)
    again = _top_up_response(api, user["access"], {"amount": 30}, key)
    assert first["statusCode"] == again["statusCode"] == 201
    assert first["body"] == again["body"]
    assert again["headers"].get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first["headers"]
    assert _balance(api, user["access"]) == 30
    assert len(_ledger(api, user["access"])) == 1


def test_same_key_with_another_body_is_409_and_changes_nothing(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    key = _key()
    assert _top_up(api, user["access"], {"amount": 30}, key)[0] == 201
    status, problem = _top_up(api, user["access"], {"amount": 31}, key)
    assert (status, problem["code"]) == (409, "idempotency_key_reused")
    assert _balance(api, user["access"]) == 30
    assert len(_ledger(api, user["access"])) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": 0}, "validation_error"),
        ({"amount": -5}, "validation_error"),
        ({"amount": 1.5}, "validation_error"),
        ({"amount": 5.0}, "validation_error"),
        ({"amount": "10"}, "validation_error"),
        ({"amount": True}, "validation_error"),
        ({"amount": None}, "validation_error"),
        ({"amount": 1e30}, "validation_error"),
        ({"amount": 10**30}, "amount_too_large"),
        ({"amount": 1_000_001}, "amount_too_large"),
        ({}, "validation_error"),
        ({"amount": 5, "currency": "EUR"}, "validation_error"),
        ('{"amount": NaN}', "validation_error"),
        ('{"amount": ', "malformed_json"),
    ],
)
def test_bad_amounts_are_refused_and_change_nothing(api: Api, body: Any, code: str) -> None:
    user = register_and_login(api, "a@example.com")
    _top_up(api, user["access"], {"amount": 7})
    status, problem = _top_up(api, user["access"], body)
    assert 400 <= status < 500
    assert problem["code"] == code
    assert _balance(api, user["access"]) == 7
    assert len(_ledger(api, user["access"])) == 1


def test_missing_idempotency_key_is_refused(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    status, problem = _top_up(api, user["access"], {"amount": 5}, key="")
    assert (status, problem["code"]) == (400, "idempotency_key_required")
    assert _balance(api, user["access"]) == 0


@pytest.mark.parametrize("key", ["x" * 256, "has space", "tab\there", "ünïcode"])
def test_malformed_idempotency_keys_are_422(api: Api, key: str) -> None:
    user = register_and_login(api, "a@example.com")
    status, problem = _top_up(api, user["access"], {"amount": 5}, key=key)
    assert (status, problem["code"]) == (422, "invalid_idempotency_key")
    assert _balance(api, user["access"]) == 0


def test_top_up_needs_authentication(api: Api) -> None:
    event = load_event("billing_top_up", access_token="x", idempotency_key=_key())
    del event["headers"]["authorization"]
    status, problem = api.call(BILLING, event)
    assert (status, problem["code"]) == (401, "not_authenticated")


@pytest.mark.parametrize("role", [Role.USER, Role.PUBLISHER])
def test_non_admins_cannot_credit_others(api: Api, role: Role) -> None:
    caller = register_and_login(api, "a@example.com", role=role)
    other = register_and_login(api, "b@example.com")
    status, problem = _top_up(api, caller["access"], {"amount": 5, "user_id": other["id"]})
    assert (status, problem["code"]) == (403, "forbidden")
    assert _balance(api, other["access"]) == 0
    assert _balance(api, caller["access"]) == 0


def test_admin_grants_to_any_user(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    user = register_and_login(api, "b@example.com")
    key = _key()
    status, entry = _top_up(api, admin["access"], {"amount": 250, "user_id": user["id"]}, key)
    assert status == 201
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("grant", 250, 250)
    assert _balance(api, user["access"]) == 250
    assert _balance(api, admin["access"]) == 0
    assert _ledger(api, admin["access"]) == []
    # Replaying the grant returns it; reusing the key for another user is refused.
    assert _top_up(api, admin["access"], {"amount": 250, "user_id": user["id"]}, key) == (
        201,
        entry,
    )
    other = register_and_login(api, "c@example.com")
    status, problem = _top_up(api, admin["access"], {"amount": 250, "user_id": other["id"]}, key)
    assert (status, problem["code"]) == (409, "idempotency_key_reused")
    assert _balance(api, user["access"]) == 250
    assert _balance(api, other["access"]) == 0


def test_grant_to_unknown_user_is_404_and_writes_nothing(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    status, problem = _top_up(api, admin["access"], {"amount": 5, "user_id": "ghost"})
    assert (status, problem["code"]) == (404, "user_not_found")
    from creditml.composition.core import ledger_repository

    assert list(ledger_repository().scan_accounts()) == []


def test_pages_are_newest_first_complete_and_stable(api: Api) -> None:
    user = register_and_login(api, "a@example.com")
    for amount in range(1, 26):
        assert _top_up(api, user["access"], {"amount": amount})[0] == 201

    status, first = _page(api, user["access"], "limit=10")
    assert status == 200
    assert [item["amount"] for item in first["items"]] == list(range(25, 15, -1))
    # A new entry between pages shifts nothing: pages continue from where they were.
    _top_up(api, user["access"], {"amount": 100})
    second = _page(api, user["access"], f"limit=10&cursor={first['next_cursor']}")[1]
    third = _page(api, user["access"], f"limit=10&cursor={second['next_cursor']}")[1]
    assert [item["amount"] for item in second["items"]] == list(range(15, 5, -1))
    assert [item["amount"] for item in third["items"]] == [5, 4, 3, 2, 1]
    assert third["next_cursor"] is None
    seen = [item["id"] for page in (first, second, third) for item in page["items"]]
    assert len(seen) == len(set(seen)) == 25


@pytest.mark.parametrize(
    "query", ["cursor=garbage!", "cursor=djE6MA", "limit=0", "limit=101", "limit=ten"]
)
def test_bad_page_parameters_are_422(api: Api, query: str) -> None:
    user = register_and_login(api, "a@example.com")
    status, problem = _page(api, user["access"], query)
    assert status == 422
    assert problem["code"] in {"invalid_cursor", "validation_error"}


def test_nobody_reads_another_users_ledger(api: Api) -> None:
    rich = register_and_login(api, "rich@example.com")
    other = register_and_login(api, "other@example.com")
    _top_up(api, rich["access"], {"amount": 500})
    assert _ledger(api, other["access"]) == []
    assert _balance(api, other["access"]) == 0
