"""The models API and register_model through their real handlers under moto, and the
prediction loader: create -> upload -> S3 event -> ready (or rejected), idempotently."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.auth.roles import Role
from creditml.composition.predictions import build_model_loader, model_loader
from creditml.composition.registration import build_registrar
from creditml.models.crypto import ModelIntegrityError
from creditml.models.registration import Outcome
from creditml.models.service import upload_key
from creditml.settings import get_settings
from creditml.storage.model_parts import Uploads
from tests.conftest import load_event
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import (
    LABELS,
    ROWS,
    create_model,
    deliver,
    model_file,
    upload_and_register,
)
from tests.models.hostile import hostile_files

MODELS = "ModelsFunction"


def _get(api: Api, token: str, model_id: str) -> tuple[int, dict[str, Any]]:
    return api.call(MODELS, load_event("models_get", access_token=token, model_id=model_id))


def _list(api: Api, token: str) -> list[str]:
    status, body = api.call(MODELS, load_event("models_list", access_token=token))
    assert status == 200
    return [item["id"] for item in body["items"]]


def _count(table: str) -> int:
    return int(boto3.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"])


def _objects(bucket: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def _big_parts(bucket: str) -> tuple[list[str], list[str]]:
    """The models bucket's big parts: (the model files', the ONNX graphs')."""
    keys = _objects(bucket)
    graphs = [key for key in keys if key.endswith(".onnx.part")]
    return [key for key in keys if key not in graphs], graphs


@pytest.fixture
def publisher(api: Api) -> dict[str, Any]:
    return register_and_login(api, "pub@example.com", role=Role.PUBLISHER)


def test_plain_users_cannot_create_models(api: Api) -> None:
    user = register_and_login(api, "user@example.com")
    status, problem = create_model(api, user["access"])
    assert (status, problem["code"]) == (403, "forbidden")
    assert _count(get_settings().models_table) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "price": 0},
        {"name": "x", "price": 1.5},
        {"name": "", "price": 1},
        {"price": 1},
        {"name": "x"},
        {"name": "x", "price": "2"},
        {"name": "x", "price": 1, "k": 1},
        # Names and descriptions are shown in terminals (the CLI) and pages: no escape
        # sequences, no bidi overrides
        {"name": "x\u001b]0;pwned\u0007\u001b[2J", "price": 1},
        {"name": "invoice\u202egpj.exe", "price": 1},
        {"name": "x", "description": "fine\nthen \u001b[31mred", "price": 1},
    ],
)
def test_bad_model_bodies_are_422(api: Api, publisher: dict[str, Any], body: Any) -> None:
    status, problem = create_model(api, publisher["access"], body)
    assert (status, problem["code"]) == (422, "validation_error")
    assert _count(get_settings().models_table) == 0


def test_create_returns_a_presigned_post_limited_in_size(
    api: Api, publisher: dict[str, Any]
) -> None:
    status, created = create_model(api, publisher["access"])
    assert status == 201
    assert (created["version"], created["status"]) == (1, "pending")
    upload = created["upload"]
    assert upload["fields"]["key"] == upload_key(created["model_id"], 1)
    assert "policy" in upload["fields"]
    assert upload["max_bytes"] == get_settings().max_model_bytes
    import base64
    import json

    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert ["content-length-range", 1, get_settings().max_model_bytes] in policy["conditions"]


def test_upload_registers_encrypted_split_model(api: Api, publisher: dict[str, Any]) -> None:
    settings = get_settings()
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    data = model_file()
    result = upload_and_register(api, model_id, 1, data)
    assert result["registrations"][0]["outcome"] == "ready", result

    status, model = _get(api, publisher["access"], model_id)
    assert (status, model["status"], model["version"]) == (200, "ready", 1)
    assert model["input_schema"] == {
        "n_features": 4,
        "feature_names": None,
        "classes": [0, 1],
        "task": "classification",
        "estimator": "RandomForestClassifier",
        "probabilities": True,
    }
    assert model["versions"][0]["status"] == "ready"
    assert (model["versions"][0]["runtime"], model["versions"][0]["runtime_reason"]) == (
        "onnx",
        None,
    )
    # The upload is gone; one small part in DynamoDB, one big part in S3 (and one of the
    # ONNX graph's), neither the file.
    assert _objects(settings.uploads_bucket) == []
    assert _count(settings.model_parts_table) == 1
    (big_key,), (_,) = _big_parts(settings.models_bucket)
    big = boto3.client("s3").get_object(Bucket=settings.models_bucket, Key=big_key)["Body"].read()
    assert data not in big
    assert len(big) == len(data) + 48 - min(3 * 1024, (len(data) + 48) // 5)


def test_duplicate_event_yields_one_version_and_no_duplicate_parts(
    api: Api, publisher: dict[str, Any]
) -> None:
    settings = get_settings()
    created = create_model(api, publisher["access"])[1]
    model_id = created["model_id"]
    key = upload_key(model_id, 1)
    Uploads(settings.uploads_bucket).put(key, model_file(), created["upload"]["fields"])
    first = deliver(api, key)
    second = deliver(api, key)
    assert first["registrations"][0]["outcome"] == "ready"
    assert second["registrations"][0]["outcome"] == "already_done"
    assert _count(settings.model_parts_table) == 1
    assert tuple(map(len, _big_parts(settings.models_bucket))) == (1, 1)
    assert len(_get(api, publisher["access"], model_id)[1]["versions"]) == 1


def test_hostile_upload_is_rejected_with_the_reason(
    api: Api, publisher: dict[str, Any], tmp_path: Path
) -> None:
    settings = get_settings()
    marker = tmp_path / "pwned"
    real = make_pipeline(StandardScaler(), LogisticRegression()).fit(ROWS, LABELS)
    data, offender = hostile_files(marker, real)["inside_fitted_pipeline"]
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    result = upload_and_register(api, model_id, 1, data)
    assert result["registrations"][0]["outcome"] == "rejected"
    status, model = _get(api, publisher["access"], model_id)
    assert (status, model["status"]) == (200, "rejected")
    assert offender in model["reason"]
    assert not marker.exists()
    assert _count(settings.model_parts_table) == 0
    assert _objects(settings.models_bucket) == []
    assert _objects(settings.uploads_bucket) == []


def test_oversized_upload_is_rejected(api: Api, publisher: dict[str, Any]) -> None:
    # Given a registrar configured for files of at most 2 KB
    registrar = build_registrar(get_settings().model_copy(update={"max_model_bytes": 2048}))
    created = create_model(api, publisher["access"])[1]
    model_id = created["model_id"]
    key = upload_key(model_id, 1)
    Uploads(get_settings().uploads_bucket).put(key, model_file(), created["upload"]["fields"])
    # When a bigger file arrives, it is rejected with the limit as the reason
    assert registrar.register(key).outcome is Outcome.REJECTED
    assert "larger than 2048 bytes" in _get(api, publisher["access"], model_id)[1]["reason"]
    assert _objects(get_settings().uploads_bucket) == []


def test_objects_we_did_not_ask_for_are_ignored_and_removed(api: Api) -> None:
    settings = get_settings()
    boto3.client("s3").put_object(Bucket=settings.uploads_bucket, Key="stray/file.bin", Body=b"x")
    result = deliver(api, "stray/file.bin")
    assert result["registrations"][0]["outcome"] == "ignored"
    assert _objects(settings.uploads_bucket) == []


def test_new_version_serves_once_ready(api: Api, publisher: dict[str, Any]) -> None:
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    upload_and_register(api, model_id, 1, model_file())
    status, created = api.call(
        MODELS,
        load_event("models_new_version", access_token=publisher["access"], model_id=model_id),
    )
    assert (status, created["version"]) == (201, 2)
    assert _get(api, publisher["access"], model_id)[1]["version"] == 1  # v1 still serves
    upload_and_register(api, model_id, 2, model_file(LogisticRegression().fit(ROWS, LABELS)))
    model = _get(api, publisher["access"], model_id)[1]
    assert (model["version"], model["latest_version"]) == (2, 2)
    assert model["input_schema"]["estimator"] == "LogisticRegression"
    assert [v["status"] for v in model["versions"]] == ["ready", "ready"]


def test_visibility_update_and_archive(api: Api, publisher: dict[str, Any]) -> None:
    user = register_and_login(api, "user@example.com")
    pending = create_model(api, publisher["access"], {"name": "wip", "price": 1})[1]["model_id"]
    ready = create_model(api, publisher["access"])[1]["model_id"]
    upload_and_register(api, ready, 1, model_file())

    assert set(_list(api, publisher["access"])) == {pending, ready}
    assert _list(api, user["access"]) == [ready]
    assert _get(api, user["access"], pending)[0] == 404

    update = load_event("models_update", access_token=user["access"], model_id=ready)
    status, problem = api.call(MODELS, update)
    assert (status, problem["code"]) == (403, "forbidden")
    update = load_event("models_update", access_token=publisher["access"], model_id=ready)
    status, model = api.call(MODELS, update)
    assert (status, model["price"], model["description"]) == (200, 3, "Retrained on November data")

    archive = load_event("models_archive", access_token=publisher["access"], model_id=ready)
    assert api.call(MODELS, archive) == (204, None)
    assert _list(api, user["access"]) == []
    assert _get(api, user["access"], ready)[0] == 404
    assert _get(api, publisher["access"], ready)[1]["status"] == "archived"


def test_admin_manages_any_model(api: Api, publisher: dict[str, Any]) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    archive = load_event("models_archive", access_token=admin["access"], model_id=model_id)
    assert api.call(MODELS, archive)[0] == 204
    assert _get(api, admin["access"], model_id)[1]["status"] == "archived"


def test_unknown_model_is_404(api: Api, publisher: dict[str, Any]) -> None:
    status, problem = _get(api, publisher["access"], "3e8a4f8e-0000-4000-8000-000000000000")
    assert (status, problem["code"]) == (404, "model_not_found")


def test_loader_decrypts_caches_and_detects_tampering(api: Api, publisher: dict[str, Any]) -> None:
    settings = get_settings()
    model = RandomForestClassifier(n_estimators=8, random_state=0).fit(ROWS, LABELS)
    data = model_file(model)
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    upload_and_register(api, model_id, 1, data)

    loaded, cached = model_loader().load(model_id, 1)
    assert not cached
    np.testing.assert_array_equal(loaded.predict(ROWS), joblib.load(io.BytesIO(data)).predict(ROWS))
    # A warm load touches neither S3 nor KMS: it works with the big part gone (the graph's:
    # ONNX serves this forest).
    _, (big_key,) = _big_parts(settings.models_bucket)
    body = boto3.client("s3").get_object(Bucket=settings.models_bucket, Key=big_key)["Body"].read()
    boto3.client("s3").delete_object(Bucket=settings.models_bucket, Key=big_key)
    again, cached = model_loader().load(model_id, 1)
    assert cached
    assert again is loaded
    # A cold container reading a tampered big part refuses it.
    boto3.client("s3").put_object(
        Bucket=settings.models_bucket, Key=big_key, Body=body[:-1] + bytes([body[-1] ^ 1])
    )
    cold = build_model_loader(settings)
    with pytest.raises(ModelIntegrityError):
        cold.load(model_id, 1)
