"""Billing over real HTTP and under real concurrency, against the serialized local stack."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import IdempotencySlot
from creditml.billing.ledger import Ledger, request_hash
from creditml.billing.payments import StubPaymentGateway
from creditml.billing.service import BillingService
from creditml.errors import InsufficientCredits
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from tests.e2e.conftest import RunningStack, bearer, login, new_account, verify_ledger


def _ledger_store() -> LedgerRepository:
    settings = get_settings()
    return LedgerRepository(settings.ledger_table, settings.users_table, settings.models_table)


def _billing() -> BillingService:
    """The billing service one container builds at cold start, from the constructors."""
    store = _ledger_store()
    return BillingService(
        ledger=Ledger(store),
        reader=store,
        payments=StubPaymentGateway(),
        max_top_up=get_settings().max_top_up_credits,
    )


def _warm_up_clients(http: httpx.Client) -> None:
    """One top-up on this thread first, for an account of its own, so the AWS clients this
    process shares (one per table) exist before the workers start, as in a process that has
    served before: botocore creates clients slowly and without a lock, and dozens of threads
    creating the same one at once cost seconds. What each worker's service caches still
    starts empty."""
    account = new_account(http)
    _billing().top_up(AccessClaims(account.id, Role.USER, 0), 1, "warm-up")


def test_demo_user_is_seeded_with_credits(http: httpx.Client, stack: RunningStack) -> None:
    # Only reads the demo user: no e2e test changes it (they make accounts of their own).
    token = login(http, "demo@creditml.local", stack.demo_password("demo@creditml.local"))
    assert http.get("/billing/balance", headers=bearer(token)).json() == {"balance": 1000}
    page = http.get("/billing/transactions", headers=bearer(token)).json()
    assert [(item["kind"], item["amount"]) for item in page["items"]] == [("grant", 1000)]


def test_top_up_balance_and_ledger_over_http(http: httpx.Client) -> None:
    payer = new_account(http, prefix="payer")
    created = http.post("/billing/top-ups", json={"amount": 40}, headers=payer.headers(_key()))
    assert created.status_code == 201
    assert http.get("/billing/balance", headers=payer.headers()).json() == {"balance": 40}
    assert http.get("/users/me", headers=payer.headers()).json()["balance"] == 40
    missing_key = http.post("/billing/top-ups", json={"amount": 40}, headers=payer.headers())
    assert missing_key.status_code == 400
    assert missing_key.json()["code"] == "idempotency_key_required"
    assert http.get("/billing/balance", headers=payer.headers()).json() == {"balance": 40}


@pytest.mark.usefixtures("stack_environment")
def test_forty_containers_debit_five_each_from_fifty(
    http: httpx.Client, stack: RunningStack
) -> None:
    """Many containers: 40 workers, each with a Ledger and repository of its own (as 40
    Lambda containers would have, no account state cached in common), debit one account at
    once through the stack's embedded AWS."""
    # Given an account holding 50 credits
    payer = new_account(http, credits=50, prefix="payer")
    _warm_up_clients(http)
    start = Barrier(40)

    def debit(index: int) -> str:
        ledger = Ledger(_ledger_store())
        start.wait()
        try:
            ledger.debit(
                payer.id,
                5,
                slot=IdempotencySlot.of(payer.id, f"debit-{index}"),
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
    assert http.get("/billing/balance", headers=payer.headers()).json() == {"balance": 0}
    entries = http.get("/billing/transactions?limit=100", headers=payer.headers()).json()["items"]
    debits = [entry for entry in entries if entry["kind"] == "debit"]
    assert len(debits) == 10
    # Each balance_after is exact or, for a debit other writers overlapped, a lower bound:
    # never more than the account held right after it. The true balances after the ten
    # debits are 45, 40, ..., 0 in commit order, so the shown values, largest first, never
    # exceed them largest first (a matching of each entry to a balance it does not exceed).
    shown = sorted((entry["balance_after"] for entry in debits), reverse=True)
    true_after = list(range(45, -5, -5))
    assert all(0 <= value <= limit for value, limit in zip(shown, true_after, strict=True))
    exact = [entry["balance_after"] for entry in debits if entry["balance_exact"]]
    assert len(set(exact)) == len(exact)  # each exact one names its own commit
    assert set(exact) <= set(true_after)
    verified = verify_ledger(stack)
    assert verified.returncode == 0, verified.stdout
    assert "OK" in verified.stdout


def test_one_container_serves_thirty_two_top_ups_with_one_key(
    http: httpx.Client, stack: RunningStack
) -> None:
    """One container, concurrent requests: 32 simultaneous HTTP top-ups with one key, all
    handled by the local stack's single process (one set of cached services), as a
    container serving requests on many threads would."""
    payer = new_account(http, prefix="payer")
    key = _key()
    start = Barrier(32)

    def top_up(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            start.wait()
            response = client.post(
                "/billing/top-ups", json={"amount": 25}, headers=payer.headers(key)
            )
            return response.status_code, str(response.json().get("id"))

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(top_up, range(32)))

    assert {status for status, _ in results} == {201}
    assert len({entry_id for _, entry_id in results}) == 1
    assert http.get("/billing/balance", headers=payer.headers()).json() == {"balance": 25}
    assert len(http.get("/billing/transactions", headers=payer.headers()).json()["items"]) == 1
    assert verify_ledger(stack).returncode == 0


@pytest.mark.usefixtures("stack_environment")
def test_thirty_two_containers_top_up_with_one_key(http: httpx.Client, stack: RunningStack) -> None:
    """Many containers: 32 workers, each with a BillingService built from constructors of
    its own (its own Ledger, nothing cached in common), receive the same top-up (a client
    retrying against whichever container answers) at once."""
    payer = new_account(http, prefix="payer")
    caller = AccessClaims(payer.id, Role.USER, 0)
    key = _key()
    _warm_up_clients(http)
    start = Barrier(32)

    def top_up(_: int) -> tuple[str, bool]:
        billing = _billing()
        start.wait()
        entry, replayed = billing.top_up(caller, 25, key)
        return entry.id, replayed

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(top_up, range(32)))

    assert len({entry_id for entry_id, _ in results}) == 1
    # One writer wins, the others are told they replayed it (a botocore-level retry of the
    # winner's committed write would be answered as a replay too, hence "at most").
    assert [replayed for _, replayed in results].count(False) <= 1
    assert http.get("/billing/balance", headers=payer.headers()).json() == {"balance": 25}
    assert verify_ledger(stack).returncode == 0


def _key() -> str:
    return str(uuid.uuid4())
