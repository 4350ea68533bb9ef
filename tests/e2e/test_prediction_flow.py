"""Billed predictions over real HTTP against the local stack, including real concurrency."""

from __future__ import annotations

import io
import subprocess
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

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CREDITML

PASSWORD = "correct horse battery"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


def _login(http: httpx.Client, email: str, password: str = PASSWORD) -> str:
    response = http.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _user(http: httpx.Client, credits: int, role: str | None = None) -> tuple[str, str]:
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    user = http.post("/auth/register", json={"email": email, "password": PASSWORD}).json()
    admin = _login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    if credits:
        granted = http.post(
            "/billing/top-ups",
            json={"amount": credits, "user_id": user["id"]},
            headers=_auth(admin, str(uuid.uuid4())),
        )
        assert granted.status_code == 201
    if role:
        http.patch(f"/users/{user['id']}", json={"role": role}, headers=_auth(admin))
    return str(user["id"]), _login(http, email)


def _iris(http: httpx.Client, token: str) -> dict[str, Any]:
    items = http.get("/models", headers=_auth(token)).json()["items"]
    model: dict[str, Any] = next(item for item in items if item["name"] == "iris-demo")
    return model


def _predict(
    http: httpx.Client, token: str, model_id: str, body: Any, key: str | None = None
) -> httpx.Response:
    return http.post(
        f"/models/{model_id}/predictions", json=body, headers=_auth(token, key or str(uuid.uuid4()))
    )


def test_top_up_predict_and_the_books_agree(http: httpx.Client) -> None:
    _, token = _user(http, 0)
    topped = http.post(
        "/billing/top-ups", json={"amount": 20}, headers=_auth(token, str(uuid.uuid4()))
    )
    assert topped.status_code == 201
    model = _iris(http, token)
    receipt = _predict(http, token, model["id"], {"inputs": [IRIS_ROW] * 3})
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["cost"] == 3 * model["price"]
    assert body["balance"] == 20 - body["cost"]
    assert body["outputs"] == [0, 0, 0]
    assert http.get("/billing/balance", headers=_auth(token)).json()["balance"] == body["balance"]
    ledger = http.get("/billing/transactions", headers=_auth(token)).json()["items"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger] == [
        ("debit", -body["cost"], body["balance"]),
        ("top_up", 20, 20),
    ]
    history = http.get("/predictions", headers=_auth(token)).json()["items"]
    assert [item["id"] for item in history] == [body["prediction_id"]]


def test_insufficient_credits_over_http(http: httpx.Client) -> None:
    _, token = _user(http, 2)
    model = _iris(http, token)
    refused = _predict(http, token, model["id"], {"inputs": [IRIS_ROW] * 3})
    assert refused.status_code == 402
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.json()["balance"], refused.json()["required"]) == (2, 3)
    assert http.get("/billing/balance", headers=_auth(token)).json()["balance"] == 2


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
    _, token = _user(http, 10)
    model = _iris(http, token)
    response = http.post(
        f"/models/{model['id']}/predictions",
        content=content,
        headers={**_auth(token, str(uuid.uuid4())), "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "code" in response.json()
    assert http.get("/billing/balance", headers=_auth(token)).json()["balance"] == 10


def test_forty_concurrent_predictions_on_ten_credits(http: httpx.Client) -> None:
    _, token = _user(http, 10)
    model = _iris(http, token)
    assert model["price"] == 1
    start = Barrier(40)

    def predict(_: int) -> int:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            start.wait()
            return _predict(client, token, model["id"], {"inputs": [IRIS_ROW]}).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(predict, range(40)))
    assert statuses.count(200) == 10
    assert statuses.count(402) == 30
    assert http.get("/billing/balance", headers=_auth(token)).json()["balance"] == 0
    assert len(http.get("/predictions?limit=100", headers=_auth(token)).json()["items"]) == 10
    verified = subprocess.run(
        [CREDITML, "ledger", "verify"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout


def test_twenty_concurrent_replays_charge_once(http: httpx.Client) -> None:
    _, token = _user(http, 50)
    model = _iris(http, token)
    key = str(uuid.uuid4())
    start = Barrier(20)

    def predict(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            start.wait()
            response = _predict(client, token, model["id"], {"inputs": [IRIS_ROW] * 2}, key)
            return response.status_code, str(response.json().get("prediction_id"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(predict, range(20)))
    assert {status for status, _ in results} == {200}
    assert len({prediction for _, prediction in results}) == 1
    assert http.get("/billing/balance", headers=_auth(token)).json()["balance"] == 48


def test_other_users_predictions_are_404_and_unlisted(http: httpx.Client) -> None:
    _, owner = _user(http, 5)
    _, other = _user(http, 5)
    model = _iris(http, owner)
    receipt = _predict(http, owner, model["id"], {"inputs": [IRIS_ROW]}).json()
    assert (
        http.get(f"/predictions/{receipt['prediction_id']}", headers=_auth(other)).status_code
        == 404
    )
    assert http.get("/predictions", headers=_auth(other)).json()["items"] == []
    mine = http.get(f"/predictions/{receipt['prediction_id']}", headers=_auth(owner))
    assert (mine.status_code, mine.json()["outputs"]) == (200, receipt["outputs"])


def _publish(http: httpx.Client, token: str, model: Any) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    created = http.post("/models", json={"name": "e2e-model", "price": 1}, headers=_auth(token))
    upload = created.json()["upload"]
    posted = httpx.post(
        upload["url"],
        data=upload["fields"],
        files={"file": ("m.joblib", buffer.getvalue())},
        timeout=60,
    )
    assert posted.status_code in (200, 201, 204)
    model_id = str(created.json()["model_id"])
    deadline = time.monotonic() + 30
    while http.get(f"/models/{model_id}", headers=_auth(token)).json()["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return model_id, buffer.getvalue()


@pytest.mark.parametrize("kind", ["forest", "pipeline"])
def test_outputs_equal_plain_joblib(http: httpx.Client, kind: str) -> None:
    _, publisher = _user(http, 100, role="publisher")
    publisher = _login(http, _email_of(http, publisher))
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


def _email_of(http: httpx.Client, token: str) -> str:
    return str(http.get("/users/me", headers=_auth(token)).json()["email"])
