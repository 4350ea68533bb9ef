"""Helpers to publish models through the real handlers under moto."""

from __future__ import annotations

import io
import warnings
from typing import Any

import boto3
import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from creditml.devstack import runtime
from creditml.models.service import upload_key
from creditml.settings import get_settings
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api

ROWS = np.random.default_rng(1).normal(size=(60, 4))
LABELS = (ROWS[:, 0] > 0).astype(int)


def model_file(model: Any | None = None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model or RandomForestClassifier(n_estimators=8, random_state=0).fit(ROWS, LABELS)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def create_model(api: Api, token: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    body = body if body is not None else {"name": "forest", "price": 2}
    return api.call(
        "ModelsFunction", with_body(load_event("models_create", access_token=token), body)
    )


def deliver(api: Api, key: str) -> dict[str, Any]:
    event = load_event(
        "s3_put_upload", uploads_bucket=get_settings().uploads_bucket, upload_key=key
    )
    result: dict[str, Any] = runtime.invoke(api._template.functions["RegisterModelFunction"], event)
    return result


def upload_and_register(api: Api, model_id: str, version: int, data: bytes) -> dict[str, Any]:
    key = upload_key(model_id, version)
    boto3.client("s3").put_object(Bucket=get_settings().uploads_bucket, Key=key, Body=data)
    return deliver(api, key)


def publish(api: Api, token: str, data: bytes | None = None, price: int = 2) -> str:
    """A ready model of the caller's; returns its id."""
    status, created = create_model(api, token, {"name": "m", "price": price})
    assert status == 201, created
    result = upload_and_register(api, created["model_id"], 1, data or model_file())
    assert result["registrations"][0]["outcome"] == "ready", result
    return str(created["model_id"])
