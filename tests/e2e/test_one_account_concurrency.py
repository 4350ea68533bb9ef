"""Many containers on one account (issue 14): separate processes as the Lambda containers,
each importing the real handlers with caches of its own, racing on one account in the
local stack's embedded AWS. No 503 while the balance covers the work, every 503 (if one
ever comes) says when to retry, and the books are exact at the end.

The per-minute prediction limit (DESIGN §12) is raised in these containers' environment:
these tests measure contention, not throttling.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Account, RunningStack, new_account, verify_ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from containers import api_event, run_containers

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
UNLIMITED = {"RATE_LIMIT_PER_MINUTE": "1000000", "POWERTOOLS_METRICS_DISABLED": "true"}


def _iris_id(http: httpx.Client, account: Account) -> str:
    items = http.get("/models", headers=account.headers()).json()["items"]
    model = next(item for item in items if item["name"] == "iris-demo")
    assert model["price"] == 1
    return str(model["id"])


def _predict(account: Account, model_id: str, key: str | None = None) -> dict[str, Any]:
    path = f"/models/{model_id}/predictions"
    event = api_event(
        "POST",
        "/models/{id}/predictions",
        path,
        token=account.token,
        body={"inputs": [IRIS_ROW]},
        key=key or str(uuid.uuid4()),
        params={"id": model_id},
    )
    return {"function": "PredictFunction", "event": event}


def _top_up(account: Account, amount: int) -> dict[str, Any]:
    event = api_event(
        "POST",
        "/billing/top-ups",
        "/billing/top-ups",
        token=account.token,
        body={"amount": amount},
        key=str(uuid.uuid4()),
    )
    return {"function": "BillingFunction", "event": event}


def _run(
    http: httpx.Client, stack: RunningStack, containers: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every container's requests, 25 at a time per container, after each container thread
    served a prediction and a top-up for an account of its own (warm, as Lambda
    containers that served before)."""
    warm = new_account(http, credits=1000, prefix="warm")
    warm_up = [_predict(warm, _iris_id(http, warm)), _top_up(warm, 1)]
    results = run_containers(
        {**stack.environment(), **UNLIMITED}, containers, threads=25, warm_up=warm_up
    )
    for result in results:  # a 503 always says when to retry
        if result["status"] == 503:
            assert result["retry_after"], result
    return results


def _statuses(results: list[dict[str, Any]], function: str | None = None) -> dict[int, int]:
    counts: dict[int, int] = {}
    for result in results:
        if function is None or result["function"] == function:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def _balance(http: httpx.Client, account: Account) -> int:
    return int(http.get("/billing/balance", headers=account.headers()).json()["balance"])


def _books_agree(http: httpx.Client, stack: RunningStack, account: Account) -> list[dict[str, Any]]:
    """Every entry of the account (all pages), after checking the whole ledger verifies."""
    verified = verify_ledger(stack)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entries: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = http.get(
            f"/billing/transactions?limit=100{cursor}", headers=account.headers()
        ).json()
        entries += page["items"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    sequences = [entry["sequence"] for entry in entries]
    assert sequences == sorted(sequences, reverse=True)  # newest first
    assert len({entry["id"] for entry in entries}) == len(entries)  # each listed once
    assert sum(entry["amount"] for entry in entries) == _balance(http, account)
    for entry in entries:  # exact, or a lower bound that never shows credits it did not have
        assert entry["balance_after"] >= 0
    return entries


def test_two_hundred_concurrent_predictions_on_one_account(
    http: httpx.Client, stack: RunningStack
) -> None:
    user = new_account(http, credits=200)
    model_id = _iris_id(http, user)
    containers = [[_predict(user, model_id) for _ in range(25)] for _ in range(8)]
    results = _run(http, stack, containers)
    assert _statuses(results) == {200: 200}
    assert _balance(http, user) == 0
    entries = _books_agree(http, stack, user)
    assert len([entry for entry in entries if entry["kind"] == "debit"]) == 200
    # Every receipt's balance is one the account really had or less, never more
    balances = sorted(result["body"]["balance"] for result in results)
    assert all(0 <= balance <= 199 for balance in balances)


def test_forty_concurrent_top_ups_of_one_account(http: httpx.Client, stack: RunningStack) -> None:
    user = new_account(http)
    containers = [[_top_up(user, 5) for _ in range(10)] for _ in range(4)]
    results = _run(http, stack, containers)
    assert _statuses(results) == {201: 40}
    assert _balance(http, user) == 200
    assert len(_books_agree(http, stack, user)) == 40


def test_forty_containers_on_ten_credits_charge_exactly_ten(
    http: httpx.Client, stack: RunningStack
) -> None:
    user = new_account(http, credits=10)
    model_id = _iris_id(http, user)
    containers = [[_predict(user, model_id) for _ in range(10)] for _ in range(4)]
    results = _run(http, stack, containers)
    assert _statuses(results) == {200: 10, 402: 30}
    for result in results:
        if result["status"] == 402:  # the account really had less than the price
            assert (result["body"]["balance"], result["body"]["required"]) == (0, 1)
    assert _balance(http, user) == 0
    _books_agree(http, stack, user)


def test_top_ups_and_predictions_mixed_on_one_account(
    http: httpx.Client, stack: RunningStack
) -> None:
    user = new_account(http, credits=40)
    model_id = _iris_id(http, user)
    containers = [
        [_top_up(user, 3) if n % 2 else _predict(user, model_id) for n in range(20)]
        for _ in range(4)
    ]
    results = _run(http, stack, containers)
    assert _statuses(results, "BillingFunction") == {201: 40}
    assert _statuses(results, "PredictFunction") == {200: 40}
    assert _balance(http, user) == 40 + 40 * 3 - 40
    _books_agree(http, stack, user)


def test_replays_under_contention_charge_each_key_once(
    http: httpx.Client, stack: RunningStack
) -> None:
    user = new_account(http, credits=100)
    model_id = _iris_id(http, user)
    keys = [str(uuid.uuid4()) for _ in range(5)]
    # Every container sends the 5 shared keys (a client retrying against whichever
    # container answers), then 10 predictions of its own
    containers = [
        [_predict(user, model_id, key) for key in keys]
        + [_predict(user, model_id) for _ in range(10)]
        for _ in range(6)
    ]
    results = _run(http, stack, containers)  # in container order, each in request order
    assert _statuses(results) == {200: 90}
    for index, key in enumerate(keys):
        answers = {
            results[container * 15 + index]["body"]["prediction_id"] for container in range(6)
        }
        assert len(answers) == 1, key  # one prediction per key, whoever answered
    charged = 5 + 6 * 10
    assert _balance(http, user) == 100 - charged
    entries = _books_agree(http, stack, user)
    assert len([entry for entry in entries if entry["kind"] == "debit"]) == charged
