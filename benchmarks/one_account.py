"""Many containers on one account, on a local stack of its own (issue 14's targets).

    .venv/bin/python benchmarks/one_account.py        # also part of `make bench`

Containers are separate processes importing the real handlers (benchmarks/containers.py),
warm before the start, with the per-minute prediction limit raised (contention, not
throttling, is measured):

  200 concurrent predictions on one account with credits for 200 (8 containers x 25)
  8 clients on one account / 8 clients on 8 accounts: predictions/s, each client one
      container predicting back to back (the same run, the same stack)
  40 concurrent distinct top-ups of one account (4 containers x 10)
  40 concurrent predictions on credits for 10

The local stack serializes every storage call behind one lock, so these are not DynamoDB's
numbers (docs/LEDGER_SCALING.md models those): they show that the ledger's writes no longer
retry each other into 503s, and that one account is not slower than many.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers import api_event, run_containers, span
from stack import ADMIN_PASSWORD, local_stack

ROW = [5.1, 3.5, 1.4, 0.2]
UNLIMITED = {"RATE_LIMIT_PER_MINUTE": "1000000", "POWERTOOLS_METRICS_DISABLED": "true"}
ADMIN_EMAIL = "admin@creditml.local"  # the local stack's seeded admin (its default)
PASSWORD = "one account benchmark"  # noqa: S105 - accounts of a throwaway stack


class _Api:
    """Accounts and the demo model on a running stack, over HTTP."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.admin = self._login(ADMIN_EMAIL, ADMIN_PASSWORD)
        items = self.http.get("/models", headers=self._auth(self.admin)).json()["items"]
        self.model_id = next(item["id"] for item in items if item["name"] == "iris-demo")

    def _auth(self, token: str, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        return headers | ({"Idempotency-Key": key} if key else {})

    def _login(self, email: str, password: str) -> str:
        answer = self.http.post("/auth/login", json={"email": email, "password": password})
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def account(self, credits: int) -> tuple[str, str]:
        """A new account with `credits`: (its id, an access token)."""
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        made = self.http.post("/auth/register", json={"email": email, "password": PASSWORD})
        made.raise_for_status()
        user_id = str(made.json()["id"])
        if credits:
            granted = self.http.post(
                "/billing/top-ups",
                json={"amount": credits, "user_id": user_id},
                headers=self._auth(self.admin, str(uuid.uuid4())),
            )
            granted.raise_for_status()
        return user_id, self._login(email, PASSWORD)

    def balance(self, token: str) -> int:
        answer = self.http.get("/billing/balance", headers=self._auth(token))
        return int(answer.json()["balance"])

    def predict(self, token: str) -> dict[str, Any]:
        path = f"/models/{self.model_id}/predictions"
        event = api_event(
            "POST",
            "/models/{id}/predictions",
            path,
            token=token,
            body={"inputs": [ROW]},
            key=str(uuid.uuid4()),
            params={"id": self.model_id},
        )
        return {"function": "PredictFunction", "event": event}

    def top_up(self, token: str, amount: int) -> dict[str, Any]:
        event = api_event(
            "POST",
            "/billing/top-ups",
            "/billing/top-ups",
            token=token,
            body={"amount": amount},
            key=str(uuid.uuid4()),
        )
        return {"function": "BillingFunction", "event": event}


def _timed(
    run: Callable[[], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], float]:
    """The results, and the seconds from the first request's start to the last one's end
    (not the containers' start-up and warm-up)."""
    results = run()
    return results, span(results)


def bench_one_account(burst: int = 200, clients: int = 8, per_client: int = 30) -> dict[str, Any]:
    """The issue's four scenarios on a stack of its own; `burst` concurrent predictions,
    `clients` back-to-back clients of `per_client` predictions each."""
    with local_stack() as (state, _, url):
        api = _Api(url)
        environment = {**state["environment"], **UNLIMITED}
        _, warm_token = api.account(100_000)
        warm_up = [api.predict(warm_token), api.top_up(warm_token, 1)]

        def run(containers: list[list[dict[str, Any]]], threads: int) -> list[dict[str, Any]]:
            return run_containers(environment, containers, threads=threads, warm_up=warm_up)

        results: dict[str, Any] = {}
        # 1. A burst on one account with credits for all of it
        _, token = api.account(burst)
        share = burst // 8
        answers, seconds = _timed(
            lambda: run([[api.predict(token) for _ in range(share)] for _ in range(8)], share)
        )
        results |= _outcome("one_account_burst", answers, seconds)
        results["one_account_burst_balance"] = api.balance(token)
        # 2. Clients back to back: one account, then one account each
        _, shared = api.account(clients * per_client)
        answers, one = _timed(
            lambda: run(
                [[api.predict(shared) for _ in range(per_client)] for _ in range(clients)], 1
            )
        )
        results |= _outcome("one_account_clients", answers, one)
        tokens = [api.account(per_client)[1] for _ in range(clients)]
        answers, many = _timed(
            lambda: run([[api.predict(t) for _ in range(per_client)] for t in tokens], 1)
        )
        results |= _outcome("many_accounts_clients", answers, many)
        results["one_over_many_accounts_rate"] = many / one
        # 3. Concurrent distinct top-ups
        _, topped = api.account(0)
        answers, seconds = _timed(
            lambda: run([[api.top_up(topped, 5) for _ in range(10)] for _ in range(4)], 10)
        )
        results |= _outcome("one_account_top_ups", answers, seconds)
        results["one_account_top_ups_balance"] = api.balance(topped)
        # 4. More predictions than credits
        _, short = api.account(10)
        answers, seconds = _timed(
            lambda: run([[api.predict(short) for _ in range(10)] for _ in range(4)], 10)
        )
        results |= _outcome("ten_credits_forty", answers, seconds)
        results["ten_credits_forty_balance"] = api.balance(short)
    return results


def _outcome(name: str, answers: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    statuses = Counter(answer["status"] for answer in answers)
    return {
        f"{name}_statuses": {str(status): count for status, count in sorted(statuses.items())},
        f"{name}_ok": statuses[200] + statuses[201],
        f"{name}_503": statuses[503],
        f"{name}_402": statuses[402],
        f"{name}_503_without_retry_after": sum(
            1 for answer in answers if answer["status"] == 503 and not answer["retry_after"]
        ),
        f"{name}_s": seconds,
        f"{name}_per_s": len(answers) / seconds,
    }


def _is(expected: float) -> Callable[[float], bool]:
    return lambda value: value == expected


# Rows of run.py's table: (name, results key, unit, target met?, target)
TARGETS: list[tuple[str, str, str, Callable[[float], bool], str]] = [
    ("200 concurrent predictions, 1 account: 200", "one_account_burst_ok", "", _is(200), "== 200"),
    ("  same: 503", "one_account_burst_503", "", _is(0), "== 0"),
    ("  same: balance left", "one_account_burst_balance", "", _is(0), "== 0"),
    (
        "8 clients on 1 account / on 8 accounts, pred/s",
        "one_over_many_accounts_rate",
        "",
        lambda v: v >= 0.8,
        ">= 0.8",
    ),
    ("40 concurrent top-ups of 1 account: 201", "one_account_top_ups_ok", "", _is(40), "== 40"),
    ("40 predictions on 10 credits: 200", "ten_credits_forty_ok", "", _is(10), "== 10"),
    ("  same: 402", "ten_credits_forty_402", "", _is(30), "== 30"),
]


def notes(results: dict[str, Any]) -> list[str]:
    """Lines under the table: the time each scenario took."""
    return [
        f"(one account: burst of 200 in {results['one_account_burst_s']:.1f} s; 8 clients "
        f"{results['one_account_clients_per_s']:.1f} pred/s on 1 account, "
        f"{results['many_accounts_clients_per_s']:.1f} on 8; 40 top-ups in "
        f"{results['one_account_top_ups_s']:.1f} s; statuses "
        f"{results['one_account_burst_statuses']}, {results['one_account_top_ups_statuses']}, "
        f"{results['ten_credits_forty_statuses']})"
    ]


if __name__ == "__main__":
    from run import record_alone

    measured = bench_one_account()
    record_alone(measured, TARGETS, notes(measured))
