"""Billing over real HTTP and under real concurrency, against the serialized local stack."""

from __future__ import annotations

import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

from creditml.billing.ledger import Ledger, request_hash
from creditml.errors import InsufficientCredits
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CREDITML, RunningStack

PASSWORD = "correct horse battery"


def _login(http: httpx.Client, email: str, password: str = PASSWORD) -> str:
    response = http.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _new_user(http: httpx.Client) -> tuple[str, str]:
    email = f"payer-{uuid.uuid4().hex[:10]}@example.com"
    user = http.post("/auth/register", json={"email": email, "password": PASSWORD}).json()
    return str(user["id"]), _login(http, email)


def _auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


def _grant(http: httpx.Client, user_id: str, amount: int) -> None:
    admin = _login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    response = http.post(
        "/billing/top-ups",
        json={"amount": amount, "user_id": user_id},
        headers=_auth(admin, str(uuid.uuid4())),
    )
    assert response.status_code == 201, response.text


def _verify_ledger() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CREDITML, "ledger", "verify"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_demo_user_is_seeded_with_credits(http: httpx.Client, stack: RunningStack) -> None:
    token = _login(http, "demo@creditml.local", stack.demo_password("demo@creditml.local"))
    assert http.get("/billing/balance", headers=_auth(token)).json() == {"balance": 1000}
    page = http.get("/billing/transactions", headers=_auth(token)).json()
    assert [(item["kind"], item["amount"]) for item in page["items"]] == [("grant", 1000)]


def test_top_up_balance_and_ledger_over_http(http: httpx.Client) -> None:
    _, token = _new_user(http)
    created = http.post(
        "/billing/top-ups", json={"amount": 40}, headers=_auth(token, str(uuid.uuid4()))
    )
    assert created.status_code == 201
    assert http.get("/billing/balance", headers=_auth(token)).json() == {"balance": 40}
    assert http.get("/users/me", headers=_auth(token)).json()["balance"] == 40
    missing_key = http.post("/billing/top-ups", json={"amount": 40}, headers=_auth(token))
    assert missing_key.status_code == 400
    assert missing_key.json()["code"] == "idempotency_key_required"
    assert http.get("/billing/balance", headers=_auth(token)).json() == {"balance": 40}


@pytest.mark.usefixtures("stack_environment")
def test_forty_concurrent_debits_of_five_on_fifty(http: httpx.Client) -> None:
    # Given an account holding 50 credits
    user_id, token = _new_user(http)
    _grant(http, user_id, 50)
    settings = get_settings()
    start = Barrier(40)

    def debit(index: int) -> str:
        # Each worker is a separate "container": its own ledger, no shared state.
        ledger = Ledger(LedgerRepository(settings.ledger_table, settings.users_table))
        start.wait()
        try:
            ledger.debit(
                user_id,
                5,
                idempotency_key=f"debit-{index}",
                request=request_hash("debit", {"n": index}),
            )
        except InsufficientCredits as refused:
            return f"402 required={refused.extra['required']}"
        return "ok"

    # When 40 debits of 5 race
    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(debit, range(40)))

    # Then exactly 10 succeed, 30 are refused, nothing is lost or overdrawn
    assert outcomes.count("ok") == 10
    assert outcomes.count("402 required=5") == 30
    assert http.get("/billing/balance", headers=_auth(token)).json() == {"balance": 0}
    entries = http.get("/billing/transactions?limit=100", headers=_auth(token)).json()["items"]
    assert [entry["balance_after"] for entry in entries] == list(range(0, 55, 5))
    verified = _verify_ledger()
    assert verified.returncode == 0, verified.stdout
    assert "OK" in verified.stdout


def test_thirty_two_concurrent_top_ups_with_one_key_credit_once(http: httpx.Client) -> None:
    _, token = _new_user(http)
    key = str(uuid.uuid4())
    start = Barrier(32)

    def top_up(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            start.wait()
            response = client.post(
                "/billing/top-ups", json={"amount": 25}, headers=_auth(token, key)
            )
            return response.status_code, str(response.json().get("id"))

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(top_up, range(32)))

    assert {status for status, _ in results} == {201}
    assert len({entry_id for _, entry_id in results}) == 1
    assert http.get("/billing/balance", headers=_auth(token)).json() == {"balance": 25}
    assert len(http.get("/billing/transactions", headers=_auth(token)).json()["items"]) == 1
    assert _verify_ledger().returncode == 0
