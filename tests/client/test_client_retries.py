"""Retries: one Idempotency-Key per logical call, backoff within the budget, never a
second charge, and no retry where a repeat could act twice."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from creditml_client import ApiError, Client, LedgerBusy, RateLimited, TransportFailed
from creditml_client._retry import Backoff, parse_retry_after
from tests.client.conftest import Sleeps
from tests.client.fake_api import FakeApi, problem

pytestmark = pytest.mark.unit

RECEIPT = {"prediction_id": "p1", "outputs": [0], "cost": 3, "balance": 4, "model_version": 1}


class ChargingPredictions:
    """A predict route that charges once per Idempotency-Key, like the real one, and whose
    first reply is lost on the way back (the transport fails after the server acted)."""

    def __init__(self, lose_replies: int) -> None:
        self.lose_replies = lose_replies
        self.charged: dict[str, dict[str, object]] = {}
        self.seen_keys: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        self.seen_keys.append(key)
        receipt = self.charged.setdefault(
            key, {**RECEIPT, "prediction_id": f"p{len(self.charged) + 1}"}
        )
        if self.lose_replies:
            self.lose_replies -= 1
            raise httpx.ReadTimeout("the reply was lost", request=request)
        return httpx.Response(200, json=receipt)


def test_a_lost_reply_is_retried_with_the_same_idempotency_key(
    api: FakeApi, client: Client, sleeps: Sleeps
) -> None:
    server = ChargingPredictions(lose_replies=2)
    api.script("POST /models/m1/predictions", server, server, server)

    receipt = client.predict("m1", [[1.0, 2.0]])

    assert receipt["prediction_id"] == "p1"
    assert len(server.seen_keys) == 3
    assert len(set(server.seen_keys)) == 1  # one key for the whole logical call
    assert len(server.charged) == 1  # so the server charged once
    assert len(sleeps) == 2


def test_each_logical_call_gets_its_own_key(api: FakeApi, client: Client) -> None:
    server = ChargingPredictions(lose_replies=0)
    api.script("POST /models/m1/predictions", server, server)

    client.predict("m1", [[1.0]])
    client.predict("m1", [[1.0]])

    assert len(set(server.seen_keys)) == 2


def test_the_key_survives_a_relogin_in_the_middle(api: FakeApi, client: Client) -> None:
    client.balance()
    api.expire_access_tokens()
    server = ChargingPredictions(lose_replies=1)
    api.script("POST /models/m1/predictions", problem(401, "invalid_token"), server, server)

    client.predict("m1", [[1.0]])

    keys = [r.headers["idempotency-key"] for r in api.calls("POST /models/m1/predictions")]
    assert len(keys) == 3
    assert len(set(keys)) == 1


def test_top_up_sends_a_key_and_the_amount(api: FakeApi, client: Client) -> None:
    entry = {"id": "e1", "kind": "top_up", "amount": 50, "balance_after": 57}
    api.script("POST /billing/top-ups", httpx.Response(500), httpx.Response(201, json=entry))

    assert client.top_up(50) == entry

    sent = api.calls("POST /billing/top-ups")
    assert [json.loads(r.content) for r in sent] == [{"amount": 50}] * 2
    assert sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]


def test_ledger_busy_honours_retry_after_then_succeeds(
    api: FakeApi, client: Client, sleeps: Sleeps
) -> None:
    busy = problem(503, "ledger_busy", {"Retry-After": "2"})
    api.script("POST /models/m1/predictions", busy, busy, httpx.Response(200, json=RECEIPT))

    assert client.predict("m1", [[1.0]]) == RECEIPT

    assert len(sleeps) == 2
    assert all(wait >= 2 for wait in sleeps)  # never sooner than the server asked


def test_ledger_busy_past_the_budget_raises_ledger_busy(
    api: FakeApi, make_client: Callable[..., Client], sleeps: Sleeps
) -> None:
    client = make_client(max_retry_seconds=5)
    api.script(
        "POST /models/m1/predictions", *[problem(503, "ledger_busy", {"Retry-After": "1"})] * 50
    )

    with pytest.raises(LedgerBusy) as caught:
        client.predict("m1", [[1.0]])

    assert caught.value.status == 503
    assert caught.value.code == "ledger_busy"
    assert sum(sleeps) <= 5
    assert 2 <= len(sleeps) <= 5


def test_zero_budget_means_no_retry(api: FakeApi, make_client: Callable[..., Client]) -> None:
    client = make_client(max_retry_seconds=0)
    api.script(
        "GET /billing/balance", httpx.Response(502), httpx.Response(200, json={"balance": 1})
    )
    client.me()  # log in first

    with pytest.raises(ApiError) as caught:
        client.balance()

    assert caught.value.status == 502
    assert caught.value.code == "http_502"


def test_gets_retry_on_5xx_and_network_errors(api: FakeApi, client: Client) -> None:
    api.script(
        "GET /billing/balance",
        httpx.Response(500),
        httpx.ReadError("connection reset"),
        httpx.Response(200, json={"balance": 3}),
    )

    assert client.balance() == 3


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_client_errors_are_never_retried(api: FakeApi, client: Client, status: int) -> None:
    api.script(
        "POST /models/m1/predictions", problem(status, "nope"), httpx.Response(200, json=RECEIPT)
    )

    with pytest.raises(ApiError):
        client.predict("m1", [[1.0]])

    assert len(api.calls("POST /models/m1/predictions")) == 1


def test_429_with_retry_after_waits_then_retries(
    api: FakeApi, client: Client, sleeps: Sleeps
) -> None:
    limited = problem(429, "rate_limited", {"Retry-After": "3"}, retry_after=3)
    api.script("GET /users/me", limited, httpx.Response(200, json={"id": "u1"}))

    assert client.me() == {"id": "u1"}
    assert sleeps[0] >= 3


def test_429_beyond_the_budget_raises_rate_limited(
    api: FakeApi, make_client: Callable[..., Client]
) -> None:
    client = make_client(max_retry_seconds=10)
    api.script(
        "POST /auth/login", problem(429, "rate_limited", {"Retry-After": "60"}, retry_after=60)
    )

    with pytest.raises(RateLimited) as caught:
        client.me()

    assert caught.value.retry_after == 60
    assert len(api.calls("POST /auth/login")) == 1


def test_an_unkeyed_post_is_not_resent_after_a_lost_reply(api: FakeApi, client: Client) -> None:
    client.me()
    api.script("POST /api-keys", httpx.ReadTimeout("lost"), httpx.Response(201, json={"id": "k2"}))

    with pytest.raises(TransportFailed) as caught:
        client.create_api_key("ci")

    assert len(api.calls("POST /api-keys")) == 1  # a second key could have been made
    assert caught.value.url == "http://api.test/api-keys"


def test_an_unkeyed_post_is_resent_when_the_connection_never_opened(
    api: FakeApi, client: Client
) -> None:
    client.me()
    created = {"id": "k1", "name": "ci", "key": "cml_x", "created_at": "2026-01-01T00:00:00Z"}
    api.script("POST /api-keys", httpx.ConnectError("refused"), httpx.Response(201, json=created))

    assert client.create_api_key("ci") == created


def test_network_failure_after_the_budget_is_transport_failed(
    api: FakeApi, make_client: Callable[..., Client], sleeps: Sleeps
) -> None:
    client = make_client(max_retry_seconds=3)
    api.script("POST /auth/login", *[httpx.ConnectError("refused")] * 100)

    with pytest.raises(TransportFailed, match="ConnectError"):
        client.balance()

    assert sum(sleeps) <= 3


def test_an_unusable_url_is_not_retried(api: FakeApi, client: Client, sleeps: Sleeps) -> None:
    api.script("POST /auth/login", httpx.UnsupportedProtocol("no such scheme"))

    with pytest.raises(TransportFailed):
        client.balance()

    assert sleeps == []


def test_backoff_grows_and_stops_at_the_budget() -> None:
    waits: list[float] = []
    backoff = Backoff(budget=4.0, sleep=waits.append, jitter=lambda: 1.0)

    while backoff.wait():
        pass

    assert waits == [0.25, 0.5, 1.0, 2.0]  # the next (4.0) would pass 4 s in total


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
