"""Request limits (DESIGN §12) against moto: the prediction limit counted by the debit's own
transaction (the 601st prediction of a minute is 429, changes nothing, and the next minute
admits again; a warm prediction stays one DynamoDB call), the per-user request limit, and
login throttling per email and per source IP with what each path costs in DynamoDB calls
(a successful log-in: nothing more than before throttling existed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import boto3
import pytest
from botocore.client import BaseClient
from fastapi import Depends, FastAPI
from mangum import Mangum

from creditml.api.limits import request_limited
from creditml.api.problems import install_problem_handlers
from creditml.api.routes.predictions import get_prediction_service
from creditml.auth.roles import Role
from creditml.auth.service import AuthService
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import EntryKind, IdempotencySlot
from creditml.billing.ledger import Ledger, request_hash
from creditml.composition.auth import login_lookup, user_repository
from creditml.composition.core import ledger_repository, session_repository, token_signer
from creditml.composition.limits import limits_repository
from creditml.composition.models import model_repository
from creditml.composition.predictions import build_model_loader
from creditml.devstack.gateway import to_http_response
from creditml.errors import InsufficientCredits, RateLimited
from creditml.limits import (
    IP_FAILURES,
    LOGIN_WINDOW_SECONDS,
    LoginThrottle,
    MinuteCount,
    RequestLimit,
    email_subject,
    ip_subject,
)
from creditml.predictions.service import PredictionService
from creditml.settings import get_settings
from creditml.storage.prediction_outputs import PredictionOutputs
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import ROWS, publish

PREDICT = "PredictFunction"
MINUTE = 29_500_000
START = MINUTE * 60.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def aws_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every AWS call made inside the block: (service:operation, parameters)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    original = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        calls.append((f"{self.meta.service_model.service_name}:{operation}", params))
        return original(self, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", counting)
        yield calls


def _fund(ledger: Ledger, account: str, amount: int) -> None:
    ledger.credit(
        account,
        amount,
        EntryKind.TOP_UP,
        actor_id=account,
        idempotency_key="fund",
        request=request_hash("top_up", {"amount": amount}),
    )


def _account_item(account: str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=get_settings().ledger_table,
        Key={"account_id": {"S": account}, "sk": {"S": "ACCOUNT"}},
        ConsistentRead=True,
    )["Item"]
    return item


# ---- Predictions: counted by the debit itself -----------------------------------------------


@pytest.mark.usefixtures("aws")
def test_the_601st_debit_of_a_minute_is_rate_limited_and_changes_nothing() -> None:
    # Given the configured limit (RATE_LIMIT_PER_MINUTE, 600 by default), a funded account,
    # and 599 debits counted this minute (by other containers: written into the item here,
    # as 599 real transactions take minutes under moto)
    limit = get_settings().rate_limit_per_minute
    assert limit == 600
    store = ledger_repository()
    clock = Clock(START + 30)
    _fund(Ledger(store), "u1", 1000)
    boto3.client("dynamodb").update_item(
        TableName=get_settings().ledger_table,
        Key={"account_id": {"S": "u1"}, "sk": {"S": "ACCOUNT"}},
        UpdateExpression="SET rate_window = :w, rate_count = :c",
        ExpressionAttributeValues={":w": {"N": str(MINUTE)}, ":c": {"N": "599"}},
    )
    # When a container that knows nothing of the account debits it: the 600th is admitted
    # (its first write learns the count from the item's old values, and sets 600)
    ledger = Ledger(store, debits_per_minute=limit, clock=clock)
    ledger.debit("u1", 1, slot=IdempotencySlot.of("u1", "p600"), request="r600")
    item = _account_item("u1")
    assert (item["rate_window"]["N"], item["rate_count"]["N"]) == (str(MINUTE), "600")
    # Then the 601st is 429 with the seconds to the next minute, never 402
    with pytest.raises(RateLimited) as caught:
        ledger.debit("u1", 1, slot=IdempotencySlot.of("u1", "extra"), request="rx")
    assert caught.value.retry_after == 30
    # also from another container (which learns the count from a failed write's old values)
    with pytest.raises(RateLimited):
        Ledger(store, debits_per_minute=limit, clock=clock).debit(
            "u1", 1, slot=IdempotencySlot.of("u1", "extra"), request="rx"
        )
    # and changed nothing
    assert (store.state("u1").balance, store.state("u1").seq) == (999, 2)
    assert store.entry("u1", IdempotencySlot.of("u1", "extra").entry_id) is None
    assert _account_item("u1")["rate_count"]["N"] == "600"
    # A replay of a key already charged is not limited: it answers as the first time
    first = store.entry("u1", IdempotencySlot.of("u1", "p600").entry_id)
    replay = ledger.debit("u1", 1, slot=IdempotencySlot.of("u1", "p600"), request="r600")
    assert replay == (first, True)
    # When the next minute starts, it is admitted
    clock.now = START + 60
    entry, _ = ledger.debit("u1", 1, slot=IdempotencySlot.of("u1", "extra"), request="rx")
    assert entry.balance_after == 998
    assert store.state("u1").rate == MinuteCount(MINUTE + 1, 1)


@pytest.mark.usefixtures("aws")
def test_rate_limit_and_insufficient_credits_are_told_apart_by_the_old_values() -> None:
    store = ledger_repository()
    clock = Clock(START + 5)
    # An account out of credits but under its limit: 402
    ledger = Ledger(store, debits_per_minute=2, clock=clock)
    _fund(ledger, "poor", 1)
    ledger.debit("poor", 1, slot=IdempotencySlot.of("poor", "a"), request="a")
    other_container = Ledger(store, debits_per_minute=2, clock=clock)
    with pytest.raises(InsufficientCredits) as caught:
        other_container.debit("poor", 1, slot=IdempotencySlot.of("poor", "b"), request="b")
    assert caught.value.extra == {"balance": 0, "required": 1}
    # The same account at its limit: 429 (the limit is checked first)
    ledger.credit("poor", 5, EntryKind.TOP_UP, actor_id="poor", idempotency_key="t", request="t")
    ledger.debit("poor", 1, slot=IdempotencySlot.of("poor", "c"), request="c")
    with pytest.raises(RateLimited):
        Ledger(store, debits_per_minute=2, clock=clock).debit(
            "poor", 100, slot=IdempotencySlot.of("poor", "d"), request="d"
        )


@pytest.fixture
def metered(api: Api) -> dict[str, Any]:
    """A ready model (price 2), a user holding 100 credits, and the predict function
    serving through a ledger limited to 2 predictions a minute on a settable clock."""
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"], price=2)
    user = register_and_login(api, "user@example.com")
    Ledger(ledger_repository()).credit(
        user["id"], 100, EntryKind.GRANT, actor_id="admin", idempotency_key="g", request="g"
    )
    settings = get_settings()
    clock = Clock(START + 15)
    service = PredictionService(
        models=model_repository(),
        loader=build_model_loader(settings),
        ledger=Ledger(ledger_repository(), debits_per_minute=2, clock=clock),
        entries=ledger_repository(),
        outputs=PredictionOutputs(settings.prediction_outputs_bucket),
        max_rows=settings.max_prediction_rows,
        max_request_bytes=settings.max_request_bytes,
        inline_outputs_bytes=settings.inline_outputs_bytes,
    )
    api.override(PREDICT, get_prediction_service, service)
    return {"token": user["access"], "user_id": user["id"], "model_id": model_id, "clock": clock}


def _predict(api: Api, setup: dict[str, Any], key: str) -> tuple[int, dict[str, str], Any]:
    from creditml.devstack import runtime

    event = load_event(
        "predictions_create",
        access_token=setup["token"],
        model_id=setup["model_id"],
        idempotency_key=key,
    )
    event = with_body(event, {"inputs": ROWS[:1].tolist()})
    response = runtime.invoke(api._template.functions[PREDICT], event)
    status, headers, body = to_http_response(response)
    return status, headers, json.loads(body)


def test_a_prediction_over_the_limit_is_429_and_a_warm_one_is_still_one_call(
    api: Api, metered: dict[str, Any]
) -> None:
    assert _predict(api, metered, "k1")[0] == 200  # warms the container
    # A warm, limited prediction: still exactly one DynamoDB call, which also counts it
    with aws_calls() as calls:
        status, _, receipt = _predict(api, metered, "k2")
    assert (status, receipt["balance"]) == (200, 96)
    assert [name for name, _ in calls] == ["dynamodb:TransactWriteItems"]
    ((_, params),) = calls
    (update,) = [item["Update"] for item in params["TransactItems"] if "Update" in item]
    assert "rate_count" in json.dumps(update)
    item = _account_item(metered["user_id"])
    assert (item["rate_window"]["N"], item["rate_count"]["N"]) == (str(MINUTE), "2")
    # Then the third in the minute is refused, with nothing charged
    status, headers, problem = _predict(api, metered, "k3")
    assert (status, problem["code"], problem["retry_after"]) == (429, "rate_limited", 45)
    assert headers["retry-after"] == "45"
    assert headers["content-type"] == "application/problem+json"
    assert "balance" not in problem  # not a 402
    assert ledger_repository().state(metered["user_id"]).balance == 96
    # A retry of a charged request still gets its receipt
    status, headers, replay = _predict(api, metered, "k2")
    assert (status, replay["prediction_id"]) == (200, receipt["prediction_id"])
    # The next minute admits it
    metered["clock"].now = START + 60
    status, _, receipt = _predict(api, metered, "k3")
    assert (status, receipt["balance"]) == (200, 94)


# ---- Other authenticated requests: one counter item per user and minute ---------------------


async def _fake_principal() -> AccessClaims:
    return AccessClaims(user_id="u-7", role=Role.USER, expires_at=0)


def _limited_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/things")
    def things(
        principal: Annotated[AccessClaims, Depends(request_limited(_fake_principal))],
    ) -> dict[str, str]:
        return {"user": principal.user_id}

    return app


def _invoke(app: FastAPI, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """One Lambda invocation of `app` under Mangum, on a loop of its own (as runtime.invoke
    does)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        handler = Mangum(app, lifespan="off")
        status, headers, body = to_http_response(handler(event, None))  # type: ignore[arg-type]
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return status, headers, json.loads(body)


def _get(handler: FastAPI, path: str = "/things") -> tuple[int, dict[str, str], Any]:
    event = load_event("billing_balance", access_token="unused")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return _invoke(handler, event)


@pytest.mark.usefixtures("aws")
def test_requests_above_the_per_user_limit_are_429_and_cost_one_update_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from creditml.composition import limits as composition

    clock = Clock(START + 50)
    limit = RequestLimit(limits_repository(), per_minute=3, clock=clock)
    monkeypatch.setattr(composition, "request_limit", lambda: limit)
    monkeypatch.setattr("creditml.api.limits.request_limit", lambda: limit)
    handler = _limited_app()
    with aws_calls() as calls:
        assert _get(handler)[0] == 200
    assert [name for name, _ in calls] == ["dynamodb:UpdateItem"]
    assert [_get(handler)[0] for _ in range(2)] == [200, 200]
    status, headers, problem = _get(handler)
    assert (status, problem["code"], headers["retry-after"]) == (429, "rate_limited", "10")
    # The refused request changed nothing; the counter expires (TTL) after its minute
    item = boto3.client("dynamodb").get_item(
        TableName=get_settings().limits_table, Key={"pk": {"S": f"rate:user:u-7:{MINUTE}"}}
    )["Item"]
    assert item["requests"]["N"] == "3"
    assert int(item["expires_at"]["N"]) >= START + 60
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=get_settings().limits_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    clock.now = START + 60
    assert _get(handler)[0] == 200


# ---- Login throttling -----------------------------------------------------------------------


AUTH = "AuthFunction"
PASSWORD = "correct horse battery"


def _clocked_logins(api: Api, clock: Clock) -> None:
    """The auth function as deployed, its log-ins throttled on `clock`."""
    from creditml.api.dependencies import get_auth_service

    service = AuthService(
        users=user_repository(),
        sessions=session_repository(),
        signer=token_signer,
        balances=ledger_repository(),
        logins=login_lookup(),
        throttle=LoginThrottle(limits_repository(), clock),
    )
    api.override(AUTH, get_auth_service, service)


def _login(api: Api, email: str, password: str, ip: str = "203.0.113.7") -> Any:
    """A log-in through the auth function's handler, from `ip` (the gateway's sourceIp)."""
    from creditml.devstack import runtime

    event = with_body(load_event("auth_login"), {"email": email, "password": password})
    event["requestContext"]["http"]["sourceIp"] = ip
    response = runtime.invoke(api._template.functions[AUTH], event)
    status, headers, body = to_http_response(response)
    return status, headers, json.loads(body)


def _limits_items() -> list[dict[str, Any]]:
    table = get_settings().limits_table
    items: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return items


@pytest.fixture
def clock(api: Api) -> Clock:
    clock = Clock(START)
    _clocked_logins(api, clock)
    register_and_login(api, "victim@example.com", PASSWORD)
    return clock


def test_five_failed_logins_hold_the_email_back_even_with_the_right_password(
    api: Api, clock: Clock
) -> None:
    for _ in range(5):
        assert _login(api, "victim@example.com", "wrong password!")[0] == 401
    # Then the right password gets 429 (and so does any spelling of the address)
    status, headers, problem = _login(api, "victim@example.com", PASSWORD)
    assert (status, problem["code"], headers["retry-after"]) == (429, "rate_limited", "60")
    assert _login(api, "VICTIM@example.com ", "wrong password!")[0] == 429
    # A throttled attempt is one read and changes nothing: still 5 failures, no session
    before = _limits_items()
    with aws_calls() as calls:
        assert _login(api, "victim@example.com", PASSWORD)[0] == 429
    assert [name for name, _ in calls] == ["dynamodb:BatchGetItem"]
    assert _limits_items() == before
    # The backoff grows with each failure after it
    clock.now += 60
    assert _login(api, "victim@example.com", "wrong password!")[0] == 401
    assert _login(api, "victim@example.com", "wrong password!")[2]["retry_after"] == 120
    clock.now += 120
    assert _login(api, "victim@example.com", PASSWORD)[0] == 200


def test_unknown_emails_are_throttled_like_known_ones(api: Api, clock: Clock) -> None:
    unknown = [_login(api, "nobody@example.com", "wrong password!")[0] for _ in range(6)]
    known = [_login(api, "victim@example.com", "wrong password!")[0] for _ in range(6)]
    assert unknown == known == [401] * 5 + [429]


def test_a_login_reads_its_counters_with_the_email_claim(api: Api, clock: Clock) -> None:
    # One strongly consistent BatchGetItem: the claim (users table) and both counters
    with aws_calls() as calls:
        assert _login(api, "Victim@Example.com", PASSWORD, ip="192.0.2.9")[0] == 200
    (_, batch), *_ = calls
    settings = get_settings()
    requested = {
        table: sorted(key["pk"]["S"] for key in read["Keys"])
        for table, read in batch["RequestItems"].items()
    }
    assert requested == {
        settings.users_table: ["EMAIL#victim@example.com"],
        settings.limits_table: sorted(
            [email_subject("victim@example.com"), ip_subject("192.0.2.9", clock.now)]
        ),
    }
    assert all(read["ConsistentRead"] for read in batch["RequestItems"].values())


def test_what_a_login_costs(api: Api) -> None:
    # The auth function as composed for Lambda, warm (its signing key fetched)
    register_and_login(api, "ada@example.com", PASSWORD)
    # A success makes the calls a log-in made before throttling existed (GetItem of the
    # email claim, GetItem of the user, TransactWriteItems of the new session), the claim's
    # GetItem now a BatchGetItem that also reads both counters; it writes no counter
    with aws_calls() as calls:
        assert _login(api, "ada@example.com", PASSWORD)[0] == 200
    assert [name for name, _ in calls] == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:TransactWriteItems",
    ]
    assert _limits_items() == []
    # A failure pays for throttling: one update per counter
    with aws_calls() as calls:
        assert _login(api, "ada@example.com", "wrong password!")[0] == 401
    assert [name for name, _ in calls] == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:UpdateItem",
    ]
    # An unknown email is counted the same way (no user item to read)
    with aws_calls() as calls:
        assert _login(api, "nobody@example.com", "wrong password!")[0] == 401
    assert [name for name, _ in calls] == [
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "dynamodb:UpdateItem",
    ]


def _seed_ip_failures(address: str, now: float, failures: int) -> None:
    """`failures` failed logins from `address` in the quarter-hour of `now` (over many
    emails; counted straight into the table, as a hundred logins take a while)."""
    boto3.client("dynamodb").update_item(
        TableName=get_settings().limits_table,
        Key={"pk": {"S": ip_subject(address, now)}},
        UpdateExpression="ADD failures :n",
        ExpressionAttributeValues={":n": {"N": str(failures)}},
    )


def test_a_source_ip_is_held_back_after_its_failures_in_a_quarter_hour(
    api: Api, clock: Clock
) -> None:
    clock.now = 40 * LOGIN_WINDOW_SECONDS + 100.0
    _seed_ip_failures("198.51.100.7", clock.now, IP_FAILURES - 1)
    # The 100th failure comes through the route: counted against the event's sourceIp
    assert _login(api, "guess-last@example.com", "pw", ip="198.51.100.7")[0] == 401
    status, headers, _ = _login(api, "victim@example.com", PASSWORD, ip="198.51.100.7")
    assert (status, headers["retry-after"]) == (429, str(LOGIN_WINDOW_SECONDS - 100))
    # Not another address, nor the next quarter-hour
    assert _login(api, "victim@example.com", PASSWORD, ip="198.51.100.8")[0] == 200
    clock.now = 41 * LOGIN_WINDOW_SECONDS
    assert _login(api, "victim@example.com", PASSWORD, ip="198.51.100.7")[0] == 200
