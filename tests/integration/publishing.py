"""Helpers to publish models through the real handlers under moto."""

from __future__ import annotations

import io
import json
import uuid
import warnings
from typing import Any

import boto3
import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from creditml.auth.roles import Role
from creditml.devstack import runtime
from creditml.devstack.gateway import to_http_response
from creditml.models.service import hash_upload_token, new_upload_token, upload_key
from creditml.settings import get_settings
from creditml.storage.model_parts import TOKEN_FIELD, Uploads
from creditml.storage.models import version_sk
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login

PREDICT = "PredictFunction"
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


def bind_upload(model_id: str, version: int) -> dict[str, str]:
    """The upload-token field of a fresh token for a pending version, for tests that do not
    keep the presigned POST of the version they upload to (what the POST's own fields
    would carry)."""
    token = new_upload_token()
    boto3.client("dynamodb").update_item(
        TableName=get_settings().models_table,
        Key={"model_id": {"S": model_id}, "sk": {"S": version_sk(version)}},
        UpdateExpression="SET upload_token_hash = :hash",
        ExpressionAttributeValues={":hash": {"S": hash_upload_token(token)}},
    )
    return {TOKEN_FIELD: token}


def upload_and_register(
    api: Api,
    model_id: str,
    version: int,
    data: bytes,
    fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Upload `data` for a version as its presigned POST would (with the `fields` of that
    POST; without them, with a token bound for the occasion) and deliver the S3 event."""
    key = upload_key(model_id, version)
    Uploads(get_settings().uploads_bucket).put(key, data, fields or bind_upload(model_id, version))
    return deliver(api, key)


def publish(api: Api, token: str, data: bytes | None = None, price: int = 2) -> str:
    """A ready model of the caller's; returns its id."""
    status, created = create_model(api, token, {"name": "m", "price": price})
    assert status == 201, created
    result = upload_and_register(
        api, created["model_id"], 1, data or model_file(), created["upload"]["fields"]
    )
    assert result["registrations"][0]["outcome"] == "ready", result
    return str(created["model_id"])


def grant(api: Api, user_id: str, amount: int) -> None:
    """A new admin grants `user_id` `amount` credits."""
    admin = register_and_login(api, f"root-{uuid.uuid4().hex[:6]}@example.com", role=Role.ADMIN)
    event = load_event(
        "billing_grant",
        access_token=admin["access"],
        demo_user_id=user_id,
        idempotency_key=str(uuid.uuid4()),
    )
    status, entry = api.call(
        "BillingFunction", with_body(event, {"amount": amount, "user_id": user_id})
    )
    assert status == 201, entry


def predict_raw(
    api: Api,
    token: str,
    model_id: str,
    body: Any,
    key: str | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """The predict handler's raw Lambda response to one prediction request."""
    event = load_event(
        "predictions_create",
        access_token=token,
        model_id=model_id,
        idempotency_key=key or str(uuid.uuid4()),
    )
    event = with_body(event, body)
    event["headers"]["content-type"] = content_type
    response: dict[str, Any] = runtime.invoke(api._template.functions[PREDICT], event)
    return response


def predict(
    api: Api, token: str, model_id: str, body: Any, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, body) of one prediction request."""
    status, _, raw = to_http_response(predict_raw(api, token, model_id, body, key))
    return status, json.loads(raw)
