"""Usage reports on the local stack, over real HTTP: two users and a publisher predict on two
publishers' models; every scope of GET /reports/usage shows exactly its part within the
60 seconds promised, and the daily report made on demand (POST /reports/daily/{date}, the
reports function starting usage_report through Lambda's Invoke API) holds the same numbers
in its JSON and CSV files, downloaded through their presigned URLs.

The stack is shared with the other e2e tests: `all` and the day's totals include their
traffic, so those are compared per model (the models here are this module's own) or as
lower bounds."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from creditml.reports.daily import CSV_COLUMNS
from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Account,
    RunningStack,
    bearer,
    login,
    new_account,
    post_upload,
)

FRESH_SECONDS = 60  # DESIGN §9: a charged prediction shows up within 60 seconds
FEATURES = np.random.default_rng(11).normal(size=(40, 3))
TOTAL_KEYS = ("predictions", "rows", "credits")


@dataclass
class Tally:
    predictions: int = 0
    rows: int = 0
    credits: int = 0
    users: set[str] = field(default_factory=set)

    def add(self, user_id: str, rows: int, cost: int) -> None:
        self.predictions += 1
        self.rows += rows
        self.credits += cost
        self.users.add(user_id)

    def totals(self) -> dict[str, int]:
        return {"predictions": self.predictions, "rows": self.rows, "credits": self.credits}


@dataclass
class Traffic:
    """What this module did: accounts, models, and every charged prediction's receipt."""

    admin: str
    publishers: dict[str, Account]  # model id -> its publisher
    users: list[Account]
    by_model: dict[str, Tally]
    by_account: dict[str, Tally]
    by_pair: dict[tuple[str, str], Tally]  # (account id, model id)
    names: dict[str, str]  # model id -> name
    day: date
    last_receipt_at: float  # time.monotonic() of the last prediction's answer

    def published(self, model_id: str) -> dict[str, int]:
        return self.by_model[model_id].totals()


def _publish(http: httpx.Client, publisher: Account, name: str, price: int) -> str:
    created = http.post("/models", json={"name": name, "price": price}, headers=publisher.headers())
    assert created.status_code == 201, created.text
    body = created.json()
    buffer = io.BytesIO()
    joblib.dump(LinearRegression().fit(FEATURES, FEATURES @ [1.0, -2.0, 0.5]), buffer)
    upload = body["upload"]
    post_upload(upload, buffer.getvalue())
    model_id = str(body["model_id"])
    deadline = time.monotonic() + 30
    while (status := _model(http, publisher, model_id)["status"]) == "pending":
        assert time.monotonic() < deadline, f"{model_id} still pending"
        time.sleep(0.1)
    assert status == "ready"
    return model_id


def _model(http: httpx.Client, account: Account, model_id: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(f"/models/{model_id}", headers=account.headers()).json()
    return found


@pytest.fixture(scope="module")
def traffic(stack: RunningStack) -> Iterator[Traffic]:
    """Two publishers' models; two users and the first publisher predict on them."""
    with stack.client() as http:
        pub_a = new_account(http, role="publisher", credits=50, prefix="report-pub")
        pub_b = new_account(http, role="publisher", prefix="report-pub")
        users = [new_account(http, credits=200, prefix="report-user") for _ in range(2)]
        suffix = uuid.uuid4().hex[:6]
        names = {
            _publish(http, pub_a, f"usage-a-{suffix}", 2): f"usage-a-{suffix}",
            _publish(http, pub_b, f"usage-b-{suffix}", 3): f"usage-b-{suffix}",
        }
        model_a, model_b = names
        plan = [  # (who, model, rows)
            (users[0], model_a, 1),
            (users[0], model_a, 3),
            (users[0], model_b, 2),
            (users[1], model_a, 2),
            (users[1], model_b, 1),
            (users[1], model_b, 4),
            (pub_a, model_b, 1),  # a publisher's own spend is not their revenue
        ]
        by_model: dict[str, Tally] = defaultdict(Tally)
        by_account: dict[str, Tally] = defaultdict(Tally)
        by_pair: dict[tuple[str, str], Tally] = defaultdict(Tally)
        for account, model_id, rows in plan:
            answer = http.post(
                f"/models/{model_id}/predictions",
                json={"inputs": FEATURES[:rows].tolist()},
                headers=account.headers(str(uuid.uuid4())),
            )
            assert answer.status_code == 200, answer.text
            cost = answer.json()["cost"]
            by_model[model_id].add(account.id, rows, cost)
            by_account[account.id].add(account.id, rows, cost)
            by_pair[account.id, model_id].add(account.id, rows, cost)
        yield Traffic(
            admin=login(http, ADMIN_EMAIL, ADMIN_PASSWORD),
            publishers={model_a: pub_a, model_b: pub_b},
            users=users,
            by_model=dict(by_model),
            by_account=dict(by_account),
            by_pair=dict(by_pair),
            names=names,
            day=datetime.now(UTC).date(),
            last_receipt_at=time.monotonic(),
        )


def _usage(http: httpx.Client, token: str, **query: str) -> httpx.Response:
    return http.get("/reports/usage", params=query, headers=bearer(token))


def _eventually(
    check: Callable[[], bool],
    since: float,
    timeout: float = FRESH_SECONDS,
    last: Callable[[], object] = lambda: None,
) -> float:
    """Seconds from `since` until `check()` held; fails after `timeout` seconds (saying what
    `last()` says: the last answer seen)."""
    while not check():
        assert time.monotonic() - since < timeout, f"not within {timeout} s; last: {last()}"
        time.sleep(0.2)
    return time.monotonic() - since


def _show(capsys: pytest.CaptureFixture[str], measured: str) -> None:
    """A number this test measured, on the terminal even when output is captured."""
    with capsys.disabled():
        print(f"\n{measured}")  # noqa: T201 - the measurement is this test's report


def _receipts(http: httpx.Client, account: Account) -> dict[str, int]:
    """The account's own charges, from its prediction history and, again, from its ledger."""
    history = http.get("/predictions", params={"limit": 100}, headers=account.headers()).json()
    predictions = history["items"]
    ledger = http.get(
        "/billing/transactions", params={"limit": 100}, headers=account.headers()
    ).json()
    debits = [entry for entry in ledger["items"] if entry["kind"] == "debit"]
    assert history["next_cursor"] is None
    assert ledger["next_cursor"] is None
    assert sorted(-entry["amount"] for entry in debits) == sorted(p["cost"] for p in predictions)
    return {
        "predictions": len(predictions),
        "rows": sum(p["rows"] for p in predictions),
        "credits": sum(p["cost"] for p in predictions),
    }


def test_each_scope_shows_exactly_its_part_within_60_seconds(
    http: httpx.Client, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    model_a, model_b = traffic.names
    pub_a, pub_b = traffic.publishers[model_a], traffic.publishers[model_b]
    accounts = [*traffic.users, pub_a]
    expected_own = {a.id: _receipts(http, a) for a in accounts}
    for account in accounts:  # the receipts are what this module counted
        assert expected_own[account.id] == traffic.by_account[account.id].totals()

    def own_is(account: Account) -> bool:
        found = _usage(http, account.token).json()
        return bool(found["totals"] == expected_own[account.id])

    def published_is(publisher: Account, model_id: str) -> bool:
        found = _usage(http, publisher.token, scope="published", group_by="model").json()
        return bool(found["totals"] == traffic.published(model_id))

    # When the counters have caught up with every prediction of this module
    elapsed = _eventually(
        lambda: (
            all(own_is(a) for a in accounts)
            and published_is(pub_a, model_a)
            and published_is(pub_b, model_b)
            and _all_models_counted(http, traffic)
        ),
        traffic.last_receipt_at,
    )
    _show(capsys, f"usage reports fresh {elapsed:.2f} s after the last prediction")
    # Then `own` is the caller's own spend, per day and per model
    user = traffic.users[0]
    by_day = _usage(http, user.token).json()
    assert (by_day["scope"], by_day["group_by"]) == ("own", "day")
    assert by_day["to"] == traffic.day.isoformat()
    assert by_day["from"] == (traffic.day - timedelta(days=29)).isoformat()
    assert by_day["items"] == [{"key": traffic.day.isoformat(), **expected_own[user.id]}]
    by_model = _usage(http, user.token, group_by="model").json()
    assert sorted(by_model["items"], key=lambda item: item["key"]) == [
        {
            "key": model_id,
            "model_name": traffic.names[model_id],
            **traffic.by_pair[user.id, model_id].totals(),
        }
        for model_id in sorted(traffic.names)
    ]
    # (models by credits, as the contract orders them)
    assert [item["credits"] for item in by_model["items"]] == sorted(
        (item["credits"] for item in by_model["items"]), reverse=True
    )
    # And `published` is everyone's predictions on the caller's models, not their own spend
    published = _usage(http, pub_a.token, scope="published", group_by="model").json()
    assert published["items"] == [
        {"key": model_a, "model_name": traffic.names[model_a], **traffic.published(model_a)}
    ]
    assert _usage(http, pub_a.token).json()["totals"] == traffic.by_pair[pub_a.id, model_b].totals()
    assert _usage(http, pub_b.token).json()["totals"] == {
        "predictions": 0,
        "rows": 0,
        "credits": 0,
    }
    # And `all` holds at least everything this module did (the stack is shared)
    everyone = _usage(http, traffic.admin, scope="all").json()["totals"]
    for key in TOTAL_KEYS:
        assert everyone[key] >= sum(getattr(t, key) for t in traffic.by_model.values())


@pytest.mark.parametrize(
    ("scope", "status", "code"),
    [("published", 403, "forbidden"), ("all", 403, "forbidden"), ("everyone", 422, None)],
)
def test_a_plain_user_sees_only_their_own_usage(
    http: httpx.Client, traffic: Traffic, scope: str, status: int, code: str | None
) -> None:
    refused = _usage(http, traffic.users[0].token, scope=scope)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == (code or "validation_error")


def test_the_daily_report_made_on_demand_holds_every_prediction(
    http: httpx.Client,
    traffic: Traffic,
    capsys: pytest.CaptureFixture[str],
    stack: RunningStack,
) -> None:
    day = traffic.day.isoformat()
    admin = bearer(traffic.admin)
    # Given the counters have every prediction of this module (the report reads them)
    _eventually(lambda: _all_models_counted(http, traffic), time.monotonic())
    # When an admin asks for today's report
    asked = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    run = http.post(f"/reports/daily/{day}", headers=admin)
    assert run.status_code == 202, run.text
    assert run.json() == {"date": day, "status": "running"}
    # Then it is there within the minute (newer than the request: the stack is shared)
    found: dict[str, Any] = {}
    answers: list[httpx.Response] = []

    def made() -> bool:
        answers.append(http.get(f"/reports/daily/{day}", headers=admin))
        assert answers[-1].status_code in (200, 404), answers[-1].text
        if answers[-1].status_code == 200:
            found.update(answers[-1].json())
        return bool(found) and datetime.fromisoformat(found["generated_at"]) >= asked

    # On a timeout, what the stack printed since the POST says why (the run is asynchronous).
    printed = len(stack.output)
    elapsed = _eventually(
        made,
        started,
        last=lambda: answers[-1].text + "\nstack:\n" + "".join(stack.output[printed:][-60:]),
    )
    _show(capsys, f"daily report of {day} ready {elapsed:.2f} s after POST")
    assert found["date"] == day
    # And its files, fetched over HTTP through their presigned URLs, hold the same numbers
    document = httpx.get(found["json_url"], timeout=30)
    assert document.status_code == 200, document.text
    report = document.json()
    assert report["date"] == day
    assert report["complete"] is False  # today is still being written
    assert report["totals"] == found["totals"]
    models = {line["model_id"]: line for line in report["models"]}
    for model_id, tally in traffic.by_model.items():
        assert models[model_id] == {
            "model_id": model_id,
            "model_name": traffic.names[model_id],
            "owner_id": traffic.publishers[model_id].id,
            **tally.totals(),
            "distinct_users": len(tally.users),
        }
        revenue = next(
            p for p in report["publishers"] if p["owner_id"] == traffic.publishers[model_id].id
        )
        assert revenue == {
            "owner_id": traffic.publishers[model_id].id,
            "models": 1,
            "predictions": tally.predictions,
            "rows": tally.rows,
            "revenue": tally.credits,
        }
    for key in TOTAL_KEYS:
        assert report["totals"][key] >= sum(getattr(t, key) for t in traffic.by_model.values())
        assert report["totals"][key] == sum(line[key] for line in report["models"])
    # The ledger agrees on this module's models (today's other traffic may still be counting)
    check = report["ledger_cross_check"]
    assert not set(traffic.names) & set(check["models_differing"])
    assert check["ledger"]["credits"] >= sum(t.credits for t in traffic.by_model.values())
    # And the CSV is the same table: a row per model and the total
    table = httpx.get(found["csv_url"], timeout=30)
    assert table.status_code == 200, table.text
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    model_rows = {row["key"]: row for row in rows if row["section"] == "model"}
    assert set(model_rows) == set(models)
    for model_id, tally in traffic.by_model.items():
        row = model_rows[model_id]
        assert (row["name"], row["owner_id"]) == (
            traffic.names[model_id],
            traffic.publishers[model_id].id,
        )
        assert [int(row[key]) for key in (*TOTAL_KEYS, "distinct_users")] == [
            *tally.totals().values(),
            len(tally.users),
        ]
    (total,) = [row for row in rows if row["section"] == "total"]
    assert total["key"] == day
    assert {key: int(total[key]) for key in TOTAL_KEYS} == found["totals"]


def _all_models_counted(http: httpx.Client, traffic: Traffic) -> bool:
    found = _usage(http, traffic.admin, scope="all", group_by="model").json()
    items = {item["key"]: item for item in found["items"]}
    return all(
        {key: items.get(model_id, {}).get(key) for key in TOTAL_KEYS} == traffic.published(model_id)
        for model_id in traffic.names
    )


def test_daily_reports_refuse_the_future_and_non_admins(
    http: httpx.Client, traffic: Traffic
) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    admin = bearer(traffic.admin)
    future = http.post(f"/reports/daily/{tomorrow}", headers=admin)
    assert future.status_code == 422, future.text
    assert future.json()["code"] == "validation_error"
    assert http.get(f"/reports/daily/{tomorrow}", headers=admin).status_code == 422
    missing = http.get("/reports/daily/2001-01-01", headers=admin)
    assert missing.status_code == 404, missing.text
    assert missing.json()["code"] == "report_not_found"
    user = traffic.users[0]
    today = traffic.day.isoformat()
    for method in ("POST", "GET"):
        refused = http.request(method, f"/reports/daily/{today}", headers=user.headers())
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "forbidden"


def test_concurrent_predictions_by_many_users_on_many_models_sum_exactly(
    stack: RunningStack, http: httpx.Client
) -> None:
    """8 users predicting at once on 3 publishers' models (40 requests, 8 at a time, through
    the serialized local stack, some beyond a balance: 402s cost nothing and count
    nothing): every publisher's `published` totals equal what their models charged."""
    publishers = [new_account(http, role="publisher", prefix="report-cc") for _ in range(3)]
    suffix = uuid.uuid4().hex[:6]
    models = [_publish(http, p, f"usage-cc{i}-{suffix}", 1 + i) for i, p in enumerate(publishers)]
    users = [new_account(http, credits=12, prefix="report-cc") for _ in range(8)]
    charged: dict[str, Tally] = defaultdict(Tally)
    refused = 0

    def work(index: int) -> list[tuple[str, str, int, int | None]]:
        account = users[index % len(users)]
        done = []
        with stack.client() as own:
            for step in range(5):
                model_id = models[(index + step) % len(models)]
                rows = 1 + (index + step) % 4
                answer = own.post(
                    f"/models/{model_id}/predictions",
                    json={"inputs": FEATURES[:rows].tolist()},
                    headers=account.headers(str(uuid.uuid4())),
                )
                assert answer.status_code in (200, 402), answer.text
                cost = answer.json()["cost"] if answer.status_code == 200 else None
                done.append((account.id, model_id, rows, cost))
        return done

    with ThreadPoolExecutor(8) as pool:
        for outcome in pool.map(work, range(8)):
            for account_id, model_id, rows, cost in outcome:
                if cost is None:
                    refused += 1
                else:
                    charged[model_id].add(account_id, rows, cost)
    assert refused > 0  # the balances were meant to run out for some
    since = time.monotonic()

    def exact() -> bool:
        return all(
            _usage(http, publisher.token, scope="published").json()["totals"]
            == charged[model_id].totals()
            for publisher, model_id in zip(publishers, models, strict=True)
        )

    _eventually(exact, since)
