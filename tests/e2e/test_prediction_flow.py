"""Billed predictions over real HTTP against the local stack, including real concurrency."""

from __future__ import annotations

import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.ledger import Ledger
from creditml.errors import InsufficientCredits
from creditml.models.loader import ModelCache, ModelLoader
from creditml.predictions.service import PredictionService
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from creditml.storage.model_parts import KmsDataKeys, ModelParts
from creditml.storage.models import ModelRepository
from creditml.storage.prediction_outputs import PredictionOutputs
from tests.e2e.conftest import Account, RunningStack, new_account, post_upload, verify_ledger

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _iris(http: httpx.Client, account: Account) -> dict[str, Any]:
    """The seeded demo model, as `account` sees it in the catalogue (read only: no test
    changes it)."""
    items = http.get("/models", headers=account.headers()).json()["items"]
    model: dict[str, Any] = next(item for item in items if item["name"] == "iris-demo")
    return model


def _predict(
    http: httpx.Client, account: Account, model_id: str, body: Any, key: str | None = None
) -> httpx.Response:
    return http.post(
        f"/models/{model_id}/predictions",
        json=body,
        headers=account.headers(key or str(uuid.uuid4())),
    )


def _balance(http: httpx.Client, account: Account) -> int:
    return int(http.get("/billing/balance", headers=account.headers()).json()["balance"])


def _container() -> PredictionService:
    """The prediction service one predict container builds at cold start, from the
    constructors: its own model metadata, model cache and ledger account states."""
    settings = get_settings()
    ledger_store = LedgerRepository(
        settings.ledger_table, settings.users_table, settings.models_table
    )
    return PredictionService(
        models=ModelRepository(settings.models_table),
        loader=ModelLoader(
            ModelParts(settings.model_parts_table, settings.models_bucket, settings.models_table),
            KmsDataKeys(settings.model_key_id),
            ModelCache(settings.model_cache_bytes),
        ),
        ledger=Ledger(ledger_store),
        entries=ledger_store,
        outputs=PredictionOutputs(settings.prediction_outputs_bucket),
        max_rows=settings.max_prediction_rows,
        max_request_bytes=settings.max_request_bytes,
        inline_outputs_bytes=settings.inline_outputs_bytes,
    )


def _warm_up_clients(http: httpx.Client, model_id: str) -> None:
    """One prediction on this thread first, for an account of its own, so the AWS clients
    this process shares (one per table, the default boto3 session's) exist before the
    workers start, as in a process that has served before: botocore creates clients slowly
    and without a lock, and dozens of threads creating the same one at once took most of a
    minute. What each worker's service caches still starts empty."""
    account = new_account(http, credits=1)
    body = json.dumps({"inputs": [IRIS_ROW]}).encode()
    _container().predict(AccessClaims(account.id, Role.USER, 0), model_id, body, "warm-up")


def test_top_up_predict_and_the_books_agree(http: httpx.Client) -> None:
    user = new_account(http)
    topped = http.post(
        "/billing/top-ups", json={"amount": 20}, headers=user.headers(str(uuid.uuid4()))
    )
    assert topped.status_code == 201
    model = _iris(http, user)
    receipt = _predict(http, user, model["id"], {"inputs": [IRIS_ROW] * 3})
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["cost"] == 3 * model["price"]
    assert body["balance"] == 20 - body["cost"]
    assert body["outputs"] == [0, 0, 0]
    assert _balance(http, user) == body["balance"]
    ledger = http.get("/billing/transactions", headers=user.headers()).json()["items"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger] == [
        ("debit", -body["cost"], body["balance"]),
        ("top_up", 20, 20),
    ]
    history = http.get("/predictions", headers=user.headers()).json()["items"]
    assert [item["id"] for item in history] == [body["prediction_id"]]


def test_insufficient_credits_over_http(http: httpx.Client) -> None:
    user = new_account(http, credits=2)
    model = _iris(http, user)
    refused = _predict(http, user, model["id"], {"inputs": [IRIS_ROW] * 3})
    assert refused.status_code == 402
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.json()["balance"], refused.json()["required"]) == (2, 3)
    assert _balance(http, user) == 2


@pytest.mark.parametrize(
    "content",
    [
        b'{"inputs": [[5.1, 3.5, 1.4]]}',
        b'{"inputs": [[5.1, NaN, 1.4, 0.2]]}',
        b'{"inputs": [[5.1, "3.5", 1.4, 0.2]]}',
        b'{"inputs": [[5.1, null, 1.4, 0.2]]}',
        b'{"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]}',
        b'{"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,'
        b' "petal_width": 0.2, "colour": 1}]}',
        b'{"inputs": []}',
        b'{"inputs": ',
    ],
)
def test_bad_inputs_over_http_leave_the_balance_alone(http: httpx.Client, content: bytes) -> None:
    user = new_account(http, credits=10)
    model = _iris(http, user)
    response = http.post(
        f"/models/{model['id']}/predictions",
        content=content,
        headers={**user.headers(str(uuid.uuid4())), "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "code" in response.json()
    assert _balance(http, user) == 10


def test_one_container_serves_forty_predictions_on_ten_credits(
    http: httpx.Client, stack: RunningStack
) -> None:
    """One container, concurrent requests: 40 simultaneous HTTP predictions, all handled by
    the local stack's single process (one prediction service, one model cache, one ledger
    state per account shared by its request threads)."""
    user = new_account(http, credits=10)
    model = _iris(http, user)
    assert model["price"] == 1
    start = Barrier(40)

    def predict(_: int) -> int:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            start.wait()
            return _predict(client, user, model["id"], {"inputs": [IRIS_ROW]}).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(predict, range(40)))
    assert statuses.count(200) == 10
    assert statuses.count(402) == 30
    assert _balance(http, user) == 0
    assert len(http.get("/predictions?limit=100", headers=user.headers()).json()["items"]) == 10
    verified = verify_ledger(stack)
    assert verified.returncode == 0, verified.stdout


@pytest.mark.usefixtures("stack_environment")
def test_forty_containers_predict_on_ten_credits(http: httpx.Client, stack: RunningStack) -> None:
    """Many containers: 40 workers, each with a prediction service of its own built from the
    constructors (cold: its own model cache, model metadata and ledger state), predict for
    one account at once against the stack's embedded AWS."""
    user = new_account(http, credits=10)
    model = _iris(http, user)
    caller = AccessClaims(user.id, Role.USER, 0)
    body = json.dumps({"inputs": [IRIS_ROW]}).encode()
    _warm_up_clients(http, model["id"])
    start = Barrier(40)

    def predict(_: int) -> str:
        service = _container()
        start.wait()
        try:
            service.predict(caller, model["id"], body, str(uuid.uuid4()))
        except InsufficientCredits:
            return "402"
        return "200"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(predict, range(40)))
    assert (outcomes.count("200"), outcomes.count("402")) == (10, 30)
    assert _balance(http, user) == 0
    assert len(http.get("/predictions?limit=100", headers=user.headers()).json()["items"]) == 10
    verified = verify_ledger(stack)
    assert verified.returncode == 0, verified.stdout


def test_one_container_serves_twenty_concurrent_replays_once(http: httpx.Client) -> None:
    """One container, concurrent requests: 20 simultaneous HTTP retries of one prediction
    (same key, same body), handled by the local stack's single process."""
    user = new_account(http, credits=50)
    model = _iris(http, user)
    key = str(uuid.uuid4())
    start = Barrier(20)

    def predict(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            start.wait()
            response = _predict(client, user, model["id"], {"inputs": [IRIS_ROW] * 2}, key)
            return response.status_code, str(response.json().get("prediction_id"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(predict, range(20)))
    assert {status for status, _ in results} == {200}
    assert len({prediction for _, prediction in results}) == 1
    assert _balance(http, user) == 48


@pytest.mark.usefixtures("stack_environment")
def test_twenty_containers_replaying_one_prediction_charge_once(http: httpx.Client) -> None:
    """Many containers: 20 workers, each with a prediction service of its own built from the
    constructors, receive the same prediction (same key, same body: a client retrying
    against whichever container answers) at once."""
    user = new_account(http, credits=50)
    model = _iris(http, user)
    caller = AccessClaims(user.id, Role.USER, 0)
    body = json.dumps({"inputs": [IRIS_ROW] * 2}).encode()
    key = str(uuid.uuid4())
    _warm_up_clients(http, model["id"])
    start = Barrier(20)

    def predict(_: int) -> str:
        service = _container()
        start.wait()
        receipt, _ = service.predict(caller, model["id"], body, key)
        return receipt.prediction_id

    with ThreadPoolExecutor(max_workers=20) as pool:
        predictions = list(pool.map(predict, range(20)))
    assert len(set(predictions)) == 1
    assert _balance(http, user) == 48


def test_other_users_predictions_are_404_and_unlisted(http: httpx.Client) -> None:
    owner = new_account(http, credits=5)
    other = new_account(http, credits=5)
    model = _iris(http, owner)
    receipt = _predict(http, owner, model["id"], {"inputs": [IRIS_ROW]}).json()
    shown = http.get(f"/predictions/{receipt['prediction_id']}", headers=other.headers())
    assert shown.status_code == 404
    assert http.get("/predictions", headers=other.headers()).json()["items"] == []
    mine = http.get(f"/predictions/{receipt['prediction_id']}", headers=owner.headers())
    assert (mine.status_code, mine.json()["outputs"]) == (200, receipt["outputs"])


def _publish(http: httpx.Client, publisher: Account, model: Any) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    created = http.post(
        "/models", json={"name": "e2e-model", "price": 1}, headers=publisher.headers()
    )
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    post_upload(upload, buffer.getvalue())
    model_id = str(created.json()["model_id"])
    deadline = time.monotonic() + 30
    while http.get(f"/models/{model_id}", headers=publisher.headers()).json()["status"] == (
        "pending"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return model_id, buffer.getvalue()


@pytest.mark.parametrize("kind", ["forest", "pipeline"])
def test_outputs_equal_plain_joblib(http: httpx.Client, kind: str) -> None:
    publisher = new_account(http, role="publisher", credits=100, prefix="pub")
    rng = np.random.default_rng(11)
    features = rng.normal(size=(120, 6))
    labels = (features[:, 0] + features[:, 3] > 0).astype(int)
    estimator = (
        RandomForestClassifier(n_estimators=15, random_state=0)
        if kind == "forest"
        else make_pipeline(StandardScaler(), LogisticRegression())
    )
    model_id, data = _publish(http, publisher, estimator.fit(features, labels))
    rows = rng.normal(size=(25, 6))
    receipt = _predict(http, publisher, model_id, {"inputs": rows.tolist()}).json()
    reference = joblib.load(io.BytesIO(data))
    assert receipt["outputs"] == reference.predict(rows).tolist()
    np.testing.assert_allclose(
        receipt["probabilities"], reference.predict_proba(rows), rtol=0, atol=1e-12
    )
