"""Publishing a model as a publisher would: create it, POST the file to the presigned URL
(multipart, straight to S3), and watch it turn ready, over real HTTP on the local stack."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import joblib
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.settings import get_settings
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, bearer, login, new_account, post_upload
from tests.models.hostile import hostile_files

ROWS = np.random.default_rng(3).normal(size=(80, 5))


def _publisher(http: httpx.Client) -> str:
    return new_account(http, role="publisher", prefix="pub").token


def _file(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def _create(http: httpx.Client, token: str) -> dict[str, Any]:
    created = http.post("/models", json={"name": "e2e", "price": 2}, headers=bearer(token))
    assert created.status_code == 201, created.text
    return dict(created.json())


def _publish(http: httpx.Client, token: str, data: bytes) -> str:
    created = _create(http, token)
    post_upload(created["upload"], data)
    return str(created["model_id"])


def _wait_for(http: httpx.Client, token: str, model_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model: dict[str, Any] = http.get(f"/models/{model_id}", headers=bearer(token)).json()
        if model["status"] != "pending":
            return model
        time.sleep(0.1)
    raise AssertionError(f"{model_id} still pending after {timeout}s")


def test_presigned_upload_becomes_ready_within_seconds(http: httpx.Client) -> None:
    token = _publisher(http)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(ROWS, ROWS[:, 0])
    started = time.monotonic()
    model_id = _publish(http, token, _file(model))
    shown = _wait_for(http, token, model_id)
    elapsed = time.monotonic() - started
    assert shown["status"] == "ready", shown
    assert elapsed < 10
    assert shown["input_schema"]["task"] == "regression"
    assert shown["input_schema"]["n_features"] == 5
    listed = http.get("/models", headers=bearer(token)).json()["items"]
    assert model_id in [item["id"] for item in listed]


def test_hostile_upload_becomes_rejected_with_a_reason(http: httpx.Client, tmp_path: Path) -> None:
    token = _publisher(http)
    marker = tmp_path / "pwned"
    real = make_pipeline(StandardScaler(), LogisticRegression()).fit(ROWS, ROWS[:, 0] > 0)
    data, offender = hostile_files(marker, real)["inside_fitted_pipeline"]
    model_id = _publish(http, token, data)
    shown = _wait_for(http, token, model_id)
    assert shown["status"] == "rejected"
    assert offender in shown["reason"]
    assert not marker.exists()


def test_plain_users_get_403_on_create(http: httpx.Client) -> None:
    user = new_account(http)
    refused = http.post("/models", json={"name": "x", "price": 1}, headers=user.headers())
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"


def test_seeded_demo_model_is_ready(http: httpx.Client) -> None:
    # Only reads the demo model: no e2e test changes it (they publish models of their own).
    token = login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
    items = http.get("/models", headers=bearer(token)).json()["items"]
    demo = next(item for item in items if item["name"] == "iris-demo")
    assert demo["status"] == "ready"
    assert demo["input_schema"]["feature_names"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]


@pytest.mark.usefixtures("stack_environment")
def test_a_form_rewritten_to_another_publishers_key_does_not_register(
    http: httpx.Client,
) -> None:
    # Given a victim's pending version, and an attacker (another publisher) with a form of
    # their own whose `key` they rewrite to the victim's (the local S3 ignores the policy)
    victim_token, attacker_token = _publisher(http), _publisher(http)
    victim = _create(http, victim_token)
    attacker = _create(http, attacker_token)
    forged = {**attacker["upload"]["fields"], "key": victim["upload"]["fields"]["key"]}
    theirs = LogisticRegression().fit(ROWS[:, :3], ROWS[:, 0] > 0)
    post_upload(attacker["upload"], _file(theirs), forged)
    # When registration has handled the forged upload (it removes the object)
    bucket = get_settings().uploads_bucket
    key = victim["upload"]["fields"]["key"]
    deadline = time.monotonic() + 30
    while _exists(bucket, key):
        assert time.monotonic() < deadline, "the forged upload was never handled"
        time.sleep(0.1)
    # Then the victim's version is still pending (not registered, not rejected)
    shown = http.get(f"/models/{victim['model_id']}", headers=bearer(victim_token)).json()
    assert (shown["status"], shown["reason"]) == ("pending", None)
    # And the victim's own upload registers their model
    mine = RandomForestRegressor(n_estimators=5, random_state=0).fit(ROWS, ROWS[:, 0])
    post_upload(victim["upload"], _file(mine))
    shown = _wait_for(http, victim_token, victim["model_id"])
    assert shown["status"] == "ready", shown
    assert shown["input_schema"]["n_features"] == 5


def _exists(bucket: str, key: str) -> bool:
    try:
        boto3.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True
